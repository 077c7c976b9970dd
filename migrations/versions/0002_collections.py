"""collections: default packaged model, change capture, store tables, worker queries

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pyembed import migrate

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_sql_file(op.get_bind(), "migrations/0002.sql")


def downgrade() -> None:
    migrate.run_sql_file(op.get_bind(), "migrations/0002.down.sql")
