"""results in the log row: a search's results are arrays in its query_log row

Revision ID: 0014
Revises: 0013
"""

from alembic import op

from pyembed.db import migrate

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
