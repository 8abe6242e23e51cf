"""detect_tasks table

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "detect_tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(8), nullable=True),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.Column("upload_key", sa.String(255), nullable=True),
        sa.Column("params", JSONB(), nullable=False),
        sa.Column("queue", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_msg", sa.Text(), nullable=True),
        sa.Column("result", JSONB(), nullable=True),
        sa.Column("detector", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("timings", JSONB(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("published_at"),
        _timestamp("started_at"),
        _timestamp("heartbeat_at"),
        _timestamp("finished_at"),
        _timestamp("purged_at"),
    )
    op.create_index("ix_detect_tasks_tenant_id", "detect_tasks", ["tenant_id"])
    op.create_index("ix_detect_tasks_status_created", "detect_tasks", ["status", "created_at"])
    op.create_index("ix_detect_tasks_created_id", "detect_tasks", ["created_at", "id"])
    op.create_index(
        "uq_detect_tasks_tenant_idempotency",
        "detect_tasks",
        [sa.text("coalesce(tenant_id, '')"), "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("detect_tasks")
