"""Alembic environment of pyembed: runs on the connection that pyembed.migrate hands over.

pyembed.migrate opens the transaction and takes the advisory lock; this file only configures
Alembic with pyembed's own version table.
"""

from alembic import context

from pyembed.db import migrate

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run pyembed's migrations with `pyembed db upgrade` or pyembed.db.migrate.upgrade(dsn), "
        "not with the alembic command"
    )

context.configure(
    connection=connection,
    version_table=migrate.VERSION_TABLE,
    version_table_schema=migrate.VERSION_SCHEMA,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
