"""endpoint models: a version that is an OpenAI-compatible embeddings endpoint, no key stored

Revision ID: 0021
Revises: 0020
"""

from alembic import op

from pyembed.db import migrate

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
