"""Errors typed by the API's `error.code`, with the HTTP status as the fallback when a proxy answered instead."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


class FacequeueError(Exception):
    """An error answer of the API: `code`, `message` and `field` from its envelope, `status` the HTTP status."""

    def __init__(
        self,
        message: str,
        code: str = "error",
        field: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.code}{where}: {self.message}"


class InvalidInput(FacequeueError):
    """422: a field is missing or wrong; `field` names it."""


class PayloadTooLarge(FacequeueError):
    """413: the upload or manifest is over the server's limit."""


class Unauthorized(FacequeueError):
    """401: no API key, or one the server does not know (see FACEQUEUE_API_KEY)."""


class InsufficientCredits(FacequeueError):
    """402: the tenant's credits do not cover the task."""


class NotFound(FacequeueError):
    """404: no such task, batch, collection or face for this key (other tenants' are 404 too)."""


class Conflict(FacequeueError):
    """409: the request clashes with the resource's state (a collection that already exists: collection_exists)."""


class IdempotencyConflict(Conflict):
    """409: this Idempotency-Key was already used with another body."""


class RateLimited(FacequeueError):
    """429, after the client's retries ran out; `retry_after` says when to come back."""


class Maintenance(FacequeueError):
    """455: the server is in maintenance and takes no new work (polling still works)."""


class FeatureDisabled(FacequeueError):
    """505: the request needs a feature the operator switched off."""


class ServerError(FacequeueError):
    """5xx: the server failed; the request may be retried later."""


class ServiceUnavailable(ServerError):
    """503, after the client's retries ran out."""


class ConnectionFailed(FacequeueError):
    """No answer at all: the server is unreachable, or a timeout expired."""


class WaitTimeout(FacequeueError, TimeoutError):
    """`wait` or `wait_batch` gave up; `last` is the last state seen (the work itself goes on)."""

    def __init__(self, last, timeout: float) -> None:
        super().__init__(f"{last.ref} is still {last.status} after {timeout:g}s", code="wait_timeout")
        self.last = last


_BY_CODE: dict[str, type[FacequeueError]] = {
    "validation_error": InvalidInput,
    "missing_input": InvalidInput,
    "invalid_url": InvalidInput,
    "payload_too_large": PayloadTooLarge,
    "unauthorized": Unauthorized,
    "insufficient_credits": InsufficientCredits,
    "not_found": NotFound,
    "idempotency_conflict": IdempotencyConflict,
    "collection_exists": Conflict,
    "rate_limited": RateLimited,
    "maintenance": Maintenance,
    "feature_disabled": FeatureDisabled,
    "internal_error": ServerError,
}
_BY_STATUS: dict[int, type[FacequeueError]] = {
    401: Unauthorized,
    402: InsufficientCredits,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
    429: RateLimited,
    455: Maintenance,
    503: ServiceUnavailable,
    505: FeatureDisabled,
}


def raise_for_error(response: httpx.Response) -> None:
    """Raise the typed error an error response stands for; do nothing for a success."""
    if response.is_success:
        return
    code, message, field = _envelope(response)
    kind = _BY_CODE.get(code or "") or _BY_STATUS.get(response.status_code)
    if kind is None:
        kind = ServerError if response.status_code >= 500 else FacequeueError
    raise kind(
        message,
        code=code or f"http_{response.status_code}",
        field=field,
        status=response.status_code,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def _envelope(response: httpx.Response) -> tuple[str | None, str, str | None]:
    """(code, message, field) from `{"error": {...}}`, or the status line when the body is something else."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        return None, f"HTTP {response.status_code} {response.reason_phrase}".strip(), None


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def connection_failed(base_url: str, error: httpx.TransportError) -> ConnectionFailed:
    if isinstance(error, httpx.TimeoutException):
        return ConnectionFailed(f"no answer from the facequeue server at {base_url} in time ({error!r})", "timeout")
    return ConnectionFailed(f"cannot reach the facequeue server at {base_url} ({error!r})", "connection_failed")
