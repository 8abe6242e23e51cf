"""retention: a tenant's own retention (else FACEQUEUE_RETENTION), an index to find each tenant's final tasks
past it, and one to find final tasks whose upload was not deleted yet (a process died right after the commit)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPLOAD_KEPT = sa.text("upload_key IS NOT NULL")


def upgrade() -> None:
    op.add_column("tenants", sa.Column("retention_seconds", sa.Integer(), nullable=True))
    op.create_index("ix_detect_tasks_tenant_finished", "detect_tasks", ["tenant_id", "finished_at"])
    op.create_index("ix_detect_tasks_upload_kept", "detect_tasks", ["status"], postgresql_where=UPLOAD_KEPT)


def downgrade() -> None:
    op.drop_index("ix_detect_tasks_upload_kept", table_name="detect_tasks")
    op.drop_index("ix_detect_tasks_tenant_finished", table_name="detect_tasks")
    op.drop_column("tenants", "retention_seconds")
