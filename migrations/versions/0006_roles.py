"""roles: pyembed_reader, pyembed_writer, pyembed_worker with least privilege

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from pyembed.db import migrate

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
