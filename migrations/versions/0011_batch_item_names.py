"""batch item names: the name a client gives a batch item (its file, URL or manifest entry), echoed in the
batch's results and failures

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("detect_tasks", sa.Column("item_name", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("detect_tasks", "item_name")
