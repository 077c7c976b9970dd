"""collections: default packaged model, change capture, store tables, worker queries

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from pyembed.db import migrate

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
