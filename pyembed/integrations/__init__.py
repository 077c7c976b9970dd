"""pyembed inside other tools: SQLAlchemy search constructs and Alembic operations."""
