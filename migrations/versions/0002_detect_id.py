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
    with op.batch_alter_table("detect_tasks") as batch:
        batch.add_column(sa.Column("detect_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("callback_url", sa.Text(), nullable=True))
        batch.create_index("uq_detect_tasks_detect_id", ["detect_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("detect_tasks") as batch:
        batch.drop_index("uq_detect_tasks_detect_id")
        batch.drop_column("callback_url")
        batch.drop_column("detect_id")
