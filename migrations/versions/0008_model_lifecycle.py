"""model lifecycle: deployments history and the evaluation tables the promotion gate reads

Revision ID: 0008
Revises: 0007
"""

from alembic import op

from pyembed.db import migrate

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
