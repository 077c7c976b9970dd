"""retrieval records: query log, ordered results, feedback

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from pyembed.db import migrate

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
