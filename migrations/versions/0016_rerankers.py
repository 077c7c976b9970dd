"""rerankers: cross-encoders in the registry beside embedding models

Revision ID: 0016
Revises: 0015
"""

from alembic import op

from pyembed.db import migrate

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
