"""Errors the core service raises; each router renders them in its own API's shape."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(ServiceError):
    status_code = 422
    code = "validation_error"


class MissingInput(InvalidInput):
    code = "missing_input"


class InvalidUrl(InvalidInput):
    code = "invalid_url"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class IdempotencyConflict(ServiceError):
    status_code = 409
    code = "idempotency_conflict"
