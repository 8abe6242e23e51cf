"""A tenant's own webhook endpoint: its default URL and its whsec_ signing secret (read, rotate)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from api.errors import ServiceError
from api.services.submission import validate_webhook_url
from api.webhook_endpoint_schemas import RotatedSecretView, WebhookEndpointView, WebhookSecretView
from db import deliveries, tenants
from db.models import Tenant, utcnow
from facequeue.core.settings import Settings


class NoTenant(ServiceError):
    status_code = 409
    code = "no_tenant"


class RotationConflict(ServiceError):
    status_code = 409
    code = "rotation_conflict"


class WebhookEndpointService:
    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def view(self, tenant_id: str | None) -> WebhookEndpointView:
        tenant = self._tenant(tenant_id)
        url = tenant.webhook_url
        return WebhookEndpointView(
            url=url,
            disabled_at=deliveries.endpoint_disabled_at(self.session, tenant.id, url) if url else None,
            secret_rotated_at=tenant.webhook_secret_rotated_at,
            previous_secret_expires_at=tenants.previous_secret_expiry(tenant, utcnow()),
        )

    def set_url(self, tenant_id: str | None, url: str) -> WebhookEndpointView:
        """The tenant's default endpoint. Checked like a callback_url: its form and address (the name resolved)
        now, the SSRF guard again at send time. Setting a URL that answered 410 Gone enables it again."""
        tenant = self._tenant(tenant_id)
        tenant.webhook_url = validate_webhook_url(url, self.settings)
        deliveries.enable_endpoint(self.session, tenant.id, tenant.webhook_url)
        self.session.commit()
        return self.view(tenant_id)

    def clear_url(self, tenant_id: str | None) -> None:
        """No default endpoint: only tasks with a callback_url notify. Events already made keep their URL."""
        self._tenant(tenant_id).webhook_url = None
        self.session.commit()

    def secret(self, tenant_id: str | None) -> WebhookSecretView:
        return WebhookSecretView(secret=self._tenant(tenant_id).webhook_secrets[0])

    def rotate_secret(self, tenant_id: str | None) -> RotatedSecretView:
        """A new current secret; the previous one signs too for FACEQUEUE_WEBHOOK_SECRET_GRACE seconds."""
        tenant = self._tenant(tenant_id)
        secret = tenants.rotate_webhook_secret(
            self.session, tenant, timedelta(seconds=self.settings.webhook_secret_grace)
        )
        if secret is None:
            self.session.rollback()
            raise RotationConflict(
                "another rotation of this secret happened at the same moment: read the current secret "
                "(GET /v1/webhook-endpoint/secret) or rotate again"
            )
        self.session.commit()
        return RotatedSecretView(
            secret=secret, previous_secret_expires_at=tenants.previous_secret_expiry(tenant, utcnow())
        )

    def _tenant(self, tenant_id: str | None) -> Tenant:
        tenant = tenants.get_tenant(self.session, tenant_id)
        if tenant is None:
            raise NoTenant(
                "webhook endpoints belong to tenants, and this request has none (FACEQUEUE_AUTH=off): "
                "give each task a callback_url instead"
            )
        return tenant
