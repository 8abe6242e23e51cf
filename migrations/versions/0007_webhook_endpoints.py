"""tenants manage their webhook endpoint: when the secret was rotated, when the previous one stops signing;
recent deliveries listed per tenant

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("webhook_secret_rotated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tenants", sa.Column("webhook_previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True))
    # GET /v1/deliveries: one tenant's attempts, newest first (coalesce: tenant-less ones are scoped together)
    op.create_index(
        "ix_webhook_deliveries_tenant_recent",
        "webhook_deliveries",
        [sa.text("coalesce(tenant_id, '')"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_tenant_recent", "webhook_deliveries")
    op.drop_column("tenants", "webhook_previous_secret_expires_at")
    op.drop_column("tenants", "webhook_secret_rotated_at")
