"""batch persons: a batch submitted with `persons: true` gives the persons found in its items batch-wide ids; each
item's person is kept with its mean identity embedding and the batch-wide person it was assigned to.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("persons", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "batch_item_persons",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(32), sa.ForeignKey("batches.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", sa.String(32), sa.ForeignKey("detect_tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("person_id", sa.String(32), nullable=False),
        sa.Column("embedding", Vector(128), nullable=False),
        sa.Column("time_ranges", postgresql.JSONB(), nullable=False),
        sa.Column("batch_person_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_batch_item_persons_batch", "batch_item_persons", ["batch_id", "batch_person_id"])
    op.create_index("ix_batch_item_persons_task", "batch_item_persons", ["task_id"])


def downgrade() -> None:
    op.drop_table("batch_item_persons")
    op.drop_column("batches", "persons")
