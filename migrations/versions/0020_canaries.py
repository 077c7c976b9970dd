"""canaries: a candidate version beside the active one on live traffic, interleaved or split

Revision ID: 0020
Revises: 0019
"""

from alembic import op

from pyembed.db import migrate

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
