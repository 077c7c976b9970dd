"""runtimes: model versions run by sentence-transformers or ONNX Runtime (fp32, int8)

Revision ID: 0012
Revises: 0011
"""

from alembic import op

from pyembed.db import migrate

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__)


def downgrade() -> None:
    migrate.run_revision_sql(op.get_bind(), __file__, down=True)
