"""Webhook events in the Standard Webhooks format: what a final task announces, how it is signed, how to verify it.

Shared by the workers (build, sign) and the API; no database or broker here. Receivers verify with the
light `facequeue_client.verify_webhook`; `verify` here behaves the same, for the server's own tests and tools.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from facequeue.core.settings import Settings
from facequeue.core.storage import signing_key

__all__ = [
    "EventType",
    "WebhookVerificationError",
    "default_secret",
    "encode_event",
    "new_webhook_id",
    "result_url",
    "signature_headers",
    "task_event",
    "verify",
]


class EventType(StrEnum):
    """Every event sent: one per final task (batch items excepted), one per batch."""

    DETECT_TASK_SUCCEEDED = "detect_task.succeeded"
    DETECT_TASK_FAILED = "detect_task.failed"
    DETECT_TASK_CANCELED = "detect_task.canceled"
    BATCH_COMPLETED = "batch.completed"


EVENT_TYPES = {
    "succeeded": EventType.DETECT_TASK_SUCCEEDED,
    "failed": EventType.DETECT_TASK_FAILED,
    "canceled": EventType.DETECT_TASK_CANCELED,
}
_DEFAULT_SECRET_LABEL = b"facequeue webhook secret v1"


def new_webhook_id() -> str:
    """The event's `webhook-id`: fixed when the event is created, the same on every retry and redelivery."""
    return "msg_" + secrets.token_urlsafe(18)


def result_url(task_id: str, settings: Settings) -> str:
    return _api_url(f"/v1/detect/{task_id}", settings)


def _api_url(path: str, settings: Settings) -> str:
    return settings.public_base().rstrip("/") + path


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_event(
    task_id: str,
    status: str,
    error_code: str | None,
    error_msg: str | None,
    finished_at: datetime,
    settings: Settings,
) -> dict[str, Any]:
    """The event body for a task that reached a final status."""
    return {
        "type": EVENT_TYPES[status],
        "timestamp": _timestamp(finished_at),
        "data": {
            "detect_task_id": task_id,
            "status": status,
            "result_url": result_url(task_id, settings),
            "error": {"code": error_code, "message": error_msg} if error_code else None,
        },
    }


def batch_event(batch: Any, counts: Mapping[str, int], settings: Settings) -> dict[str, Any]:
    """The one event of a batch whose items are all final."""
    return {
        "type": EventType.BATCH_COMPLETED,
        "timestamp": _timestamp(batch.finished_at),
        "data": {
            "batch_id": batch.id,
            "total": batch.total,
            "counts": dict(counts),
            "canceled": batch.canceled_at is not None,
            "results_url": _api_url(f"/v1/batches/{batch.id}/results", settings),
        },
    }


def encode_event(event: Mapping[str, Any]) -> str:
    """The exact text that is sent (and stored, so every attempt carries the same bytes)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def default_secret(settings: Settings) -> str:
    """FACEQUEUE_WEBHOOK_SECRET, or a whsec_ secret derived from the data dir's kept signing key.

    Deriving (instead of keeping a second key file) gives every host sharing FACEQUEUE_SIGNING_SECRET
    the same webhook secret, and reveals nothing about the signing key itself.
    """
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    derived = hmac.new(signing_key(settings), _DEFAULT_SECRET_LABEL, hashlib.sha256).digest()
    return "whsec_" + base64.b64encode(derived).decode()


def signature_headers(webhook_id: str, sent_at: datetime, body: str, webhook_secrets: Iterable[str]) -> dict[str, str]:
    """Standard Webhooks headers; one signature per secret, so receivers on either side of a rotation verify."""
    signatures = " ".join(Webhook(secret).sign(webhook_id, sent_at, body) for secret in webhook_secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signatures,
    }


def verify(payload: bytes | str, headers: Mapping[str, str], secret: str) -> dict[str, Any]:
    """Check the signature (any of those sent) and the timestamp (5 minutes' tolerance); return the parsed event.

    Accepts and refuses exactly what facequeue_client.verify_webhook does (tests/webhooks/test_endpoint_api.py
    checks both on the same cases); receivers should use that light package rather than import the server.
    Raises WebhookVerificationError when the headers are missing, malformed, stale or signed with another secret.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        return Webhook(secret).verify(payload, lowered)
    except WebhookVerificationError:
        raise
    except ValueError as error:  # a malformed signature header, or a signed body that is not JSON
        raise WebhookVerificationError(f"malformed webhook: {error}") from error
