"""trust: an owner role, tenant-aware log, admin-only embedding settings

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from pyembed.db import migrate

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
