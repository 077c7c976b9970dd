"""training records: runs and their loss curves

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from pyembed import migrate

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_sql_file(op.get_bind(), "migrations/0009.sql")


def downgrade() -> None:
    migrate.run_sql_file(op.get_bind(), "migrations/0009.down.sql")
