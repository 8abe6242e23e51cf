"""Errors the core service raises; each router renders them in its own API's shape."""

from __future__ import annotations

# Errors that gate a request before any work (auth, credits, rate, maintenance, features, a backend
# that is away): every API answers them with the matching HTTP status, whatever its usual error status is.
GATE_STATUSES = frozenset({401, 402, 429, 455, 503, 505})


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def headers(self) -> dict[str, str]:
        return {}


class InvalidInput(ServiceError):
    status_code = 422
    code = "validation_error"


class MissingInput(InvalidInput):
    code = "missing_input"


class InvalidUrl(InvalidInput):
    code = "invalid_url"


class ForbiddenUrl(InvalidInput):
    """A URL whose address the workers would refuse to fetch (the SSRF guard), refused at submit instead."""

    code = "url_forbidden"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"

    @property
    def headers(self) -> dict[str, str]:
        # the server then closes the connection instead of reading (and dropping) the rest of the body
        return {"Connection": "close"}


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(ServiceError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class IdempotencyConflict(ServiceError):
    status_code = 409
    code = "idempotency_conflict"


class SyncTimeout(ServiceError):
    """A synchronous compat call waited its limit; the task itself keeps running."""

    status_code = 504
    code = "sync_timeout"

    def __init__(self, task_id: str, timeout: float) -> None:
        super().__init__(
            f"Detection did not finish within {timeout:g}s; it is still running as detect_task_id {task_id} "
            f"(poll GET /v1/detect/{task_id})",
            field="detect_task_id",
        )
        self.task_id = task_id


class InternalError(ServiceError):
    status_code = 500
    code = "internal_error"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class InsufficientCredits(ServiceError):
    status_code = 402
    code = "insufficient_credits"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManySyncCalls(RateLimited):
    """An API key already has FACEQUEUE_MAX_SYNC_CALLS_PER_KEY synchronous calls waiting."""

    code = "too_many_sync_calls"


class Maintenance(ServiceError):
    status_code = 455
    code = "maintenance"


class ServiceUnavailable(ServiceError):
    """The database or Redis did not answer in time (down, restarting, frozen): retrying soon should work."""

    status_code = 503
    code = "service_unavailable"
    retry_after = 5  # seconds: a restart or a failover takes a few

    def __init__(self, message: str = "The service is temporarily unavailable; retry in a few seconds") -> None:
        super().__init__(message)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class FeatureDisabled(ServiceError):
    status_code = 505
    code = "feature_disabled"
