"""training records: runs and their loss curves

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from pyembed.db import migrate

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
