"""core catalog: schemas, pgvector, models, versions, artifacts, collections, queue, workers

Revision ID: 0001
Revises:
"""

from alembic import op

from pyembed.db import migrate

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
