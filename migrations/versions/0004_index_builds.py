"""index builds: every ANN index with its parameters, duration, size and measured recall

Revision ID: 0004
Revises: 0003
"""

from alembic import op

from pyembed.db import migrate

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
