"""embedding text inside SQL where plpython3u exists

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from pyembed.db import migrate

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
