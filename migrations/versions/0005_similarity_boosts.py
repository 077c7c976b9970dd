"""similarity boosts: same domain, related domains, same content type

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from pyembed.db import migrate

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
