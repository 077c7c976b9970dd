"""hybrid search: tsvector beside every store, BM25 statistics

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from pyembed.db import migrate

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
