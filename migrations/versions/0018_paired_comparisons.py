"""paired_comparisons: per-query metrics and paired comparisons of evaluation runs

Revision ID: 0018
Revises: 0017
"""

from alembic import op

from pyembed.db import migrate

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
