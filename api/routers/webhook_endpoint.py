"""A tenant's own webhook endpoint, managed with its API key: the default URL and the whsec_ signing secret."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from api.deps import TenantDep, WebhookEndpointServiceDep
from api.openapi.responses import BODY_ERRORS, CALLER_GATES, NATIVE_ERRORS, NO_TENANT, ROTATION_CONFLICT
from api.webhook_endpoint_schemas import (
    RotatedSecretView,
    WebhookEndpointUpdate,
    WebhookEndpointView,
    WebhookSecretView,
)

# every route needs a tenant: 409 no_tenant with FACEQUEUE_AUTH=off
router = APIRouter(
    prefix="/v1/webhook-endpoint", tags=["webhooks"], responses=NATIVE_ERRORS.responses(*CALLER_GATES, NO_TENANT)
)


@router.get("", response_model=WebhookEndpointView, operation_id="getWebhookEndpoint")
def get_webhook_endpoint(service: WebhookEndpointServiceDep, tenant_id: TenantDep) -> WebhookEndpointView:
    return service.view(tenant_id)


@router.put(
    "",
    response_model=WebhookEndpointView,
    operation_id="setWebhookEndpoint",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS),
)
def set_webhook_endpoint(
    body: WebhookEndpointUpdate, service: WebhookEndpointServiceDep, tenant_id: TenantDep
) -> WebhookEndpointView:
    """Where events of tasks without a callback_url go. Putting a URL that answered 410 Gone enables it again."""
    return service.set_url(tenant_id, body.url)


@router.delete(
    "", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, operation_id="deleteWebhookEndpoint"
)
def delete_webhook_endpoint(service: WebhookEndpointServiceDep, tenant_id: TenantDep) -> Response:
    """No default endpoint any more: only tasks with a callback_url send events."""
    service.clear_url(tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/secret", response_model=WebhookSecretView, operation_id="getWebhookSecret")
def get_webhook_secret(service: WebhookEndpointServiceDep, tenant_id: TenantDep) -> WebhookSecretView:
    """The current whsec_ secret, to verify events with."""
    return service.secret(tenant_id)


@router.post(
    "/rotate-secret",
    response_model=RotatedSecretView,
    operation_id="rotateWebhookSecret",
    responses=NATIVE_ERRORS.responses(NO_TENANT, ROTATION_CONFLICT),
)
def rotate_webhook_secret(service: WebhookEndpointServiceDep, tenant_id: TenantDep) -> RotatedSecretView:
    """A new current secret; the previous one keeps signing too until previous_secret_expires_at
    (FACEQUEUE_WEBHOOK_SECRET_GRACE)."""
    return service.rotate_secret(tenant_id)
