"""how long the frames a worker kept for annotated previews stay stored (FACEQUEUE_PREVIEW_TTL), so the
reaper can delete them once that time has passed

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_tasks", sa.Column("previews_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_detect_tasks_previews_until", "detect_tasks", ["previews_until"])


def downgrade() -> None:
    op.drop_index("ix_detect_tasks_previews_until", table_name="detect_tasks")
    op.drop_column("detect_tasks", "previews_until")
