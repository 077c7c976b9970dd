"""reranked_search: reranked searches in the log, reranked pipelines in evaluation

Revision ID: 0017
Revises: 0016
"""

from alembic import op

from pyembed.db import migrate

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
