"""crun detect_id and callback_url on tasks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_tasks", sa.Column("detect_id", sa.String(32), nullable=True))
    op.add_column("detect_tasks", sa.Column("callback_url", sa.Text(), nullable=True))
    op.create_index("uq_detect_tasks_detect_id", "detect_tasks", ["detect_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_detect_tasks_detect_id", table_name="detect_tasks")
    op.drop_column("detect_tasks", "callback_url")
    op.drop_column("detect_tasks", "detect_id")
