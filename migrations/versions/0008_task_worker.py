"""the worker run that claimed each task (worker name and pool process id), so a run whose pool process
or worker died is re-queued at once instead of after its heartbeat goes stale

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_tasks", sa.Column("worker_name", sa.String(255), nullable=True))
    op.add_column("detect_tasks", sa.Column("worker_pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("detect_tasks", "worker_pid")
    op.drop_column("detect_tasks", "worker_name")
