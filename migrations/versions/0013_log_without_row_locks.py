"""log without row locks: the query log's foreign keys become triggers

Revision ID: 0013
Revises: 0012
"""

from alembic import op

from pyembed.db import migrate

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
