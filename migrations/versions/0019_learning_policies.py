"""learning_policies: collections that train by themselves, and what each run decided

Revision ID: 0019
Revises: 0018
"""

from alembic import op

from pyembed.db import migrate

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
