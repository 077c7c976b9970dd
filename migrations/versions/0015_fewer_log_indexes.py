"""fewer log indexes: a logged search writes two index entries fewer

Revision ID: 0015
Revises: 0014
"""

from alembic import op

from pyembed.db import migrate

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
