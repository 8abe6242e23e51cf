"""Verifying facequeue's webhooks on the receiving side (Standard Webhooks signatures)."""

from __future__ import annotations

from collections.abc import Mapping

from standardwebhooks import Webhook, WebhookVerificationError

from facequeue_client.models import WebhookEvent

__all__ = ["WebhookVerificationError", "verify_webhook"]


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str) -> WebhookEvent:
    """Check the signature (any of the ones sent, so both sides of a secret rotation verify) and that the
    timestamp is within 5 minutes, then return the event.

    `headers` may be any mapping (a framework's request headers; names in any case). Raises
    WebhookVerificationError when the headers are missing, malformed, stale, or signed with another secret.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        payload = Webhook(secret).verify(body, lowered)
    except WebhookVerificationError:
        raise
    except ValueError as error:  # a malformed signature header, or a signed body that is not JSON
        raise WebhookVerificationError(f"malformed webhook: {error}") from error
    return WebhookEvent.model_validate({**payload, "webhook_id": lowered["webhook-id"]})
