"""The database: connections, the migration runner, the embedded server, named SQL queries."""
