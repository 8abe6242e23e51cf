"""batches, and batch membership of tasks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_batches_tenant_id", "batches", ["tenant_id"])
    op.add_column("detect_tasks", sa.Column("batch_id", sa.String(32), nullable=True))
    op.add_column("detect_tasks", sa.Column("batch_position", sa.Integer(), nullable=True))
    op.create_index("ix_detect_tasks_batch_position", "detect_tasks", ["batch_id", "batch_position"])
    op.create_index("ix_detect_tasks_held", "detect_tasks", ["queue", "status", "published_at", "tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_detect_tasks_held", table_name="detect_tasks")
    op.drop_index("ix_detect_tasks_batch_position", table_name="detect_tasks")
    op.drop_column("detect_tasks", "batch_position")
    op.drop_column("detect_tasks", "batch_id")
    op.drop_index("ix_batches_tenant_id", "batches")
    op.drop_table("batches")
