"""which API submitted each task (native, batch or a compat API), for metrics by API

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_tasks", sa.Column("api", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column("detect_tasks", "api")
