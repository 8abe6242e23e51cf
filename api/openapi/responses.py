"""Error responses for the document, each rendered by its API's own renderer: the status, the shape and the
example declared are what a client gets (Akool's detect_faces answers most errors with HTTP 200, crun and
AceData fold some statuses into others, and so on).

A route passes the statuses it can answer (their typical error below), or error instances of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from api.auth import MISSING_KEY
from api.compat import ErrorRenderer, native_error
from api.errors import (
    FeatureDisabled,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidInput,
    Maintenance,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    SyncTimeout,
    Unauthorized,
)
from api.limits import json_body_limit
from api.openapi.shapes import NativeError
from api.services.batches import PersonsNotRequested
from api.services.collections import CollectionExists
from api.services.deliveries import EndpointDisabled, NothingToRedeliver
from api.services.detect import TaskFinal
from api.services.gates import MAINTENANCE_MESSAGE
from api.services.webhook_endpoints import NoTenant, RotationConflict
from facequeue.core.settings import Settings

JSON = "application/json"
EXAMPLE_TASK_ID = "0b9d8f52c3e44c3d9a7c1e5f2a6b4d10"
EXAMPLE_BATCH_ID = "7c2e4a9b1d3f4e5a8b6c0d2e4f6a8b0c"
DEFAULTS = Settings.model_construct()  # the examples show the default limits, whatever this server's are

CALLER_GATES = (401, 429, 503)  # every route that needs the key: the key, its rate limit, a backend away
SUBMIT_GATES = (402, 455, 505)  # new work only: credits, maintenance, a disabled feature
BODY_ERRORS = (413, 422)  # a body over the route's limit (api/limits.py), an invalid one

TYPICAL_ERRORS: dict[int, ServiceError] = {
    401: Unauthorized(MISSING_KEY),
    402: InsufficientCredits("Insufficient Credits: this task needs 3"),
    404: NotFound(f"detect task {EXAMPLE_TASK_ID} not found", field="detect_task_id"),
    409: IdempotencyConflict("Idempotency-Key was already used with a different request body", field="Idempotency-Key"),
    413: PayloadTooLarge(f"the request body is larger than {json_body_limit(DEFAULTS)} bytes"),
    422: InvalidInput("num_frames: Input should be less than or equal to 100", field="num_frames"),
    429: RateLimited(f"Rate limit of {DEFAULTS.default_rate_limit} exceeded; retry in 1s", retry_after=1),
    455: Maintenance(MAINTENANCE_MESSAGE),
    503: ServiceUnavailable(),
    504: SyncTimeout(EXAMPLE_TASK_ID, DEFAULTS.sync_timeout),
    505: FeatureDisabled("Feature 'crops' is disabled", field="crops"),
}


def missing_field(name: str) -> InvalidInput:
    """The 422 of a request without a required field, as api/compat.py's validation_error words it."""
    return InvalidInput(f"{name}: Field required", field=name)


# Errors of one route each, with the services' messages
COLLECTION_EXISTS = CollectionExists("collection staff already exists", field="collection_id")
COLLECTION_NOT_FOUND = NotFound("collection staff not found", field="collection_id")
FACE_NOT_FOUND = NotFound("face 5aQx1MqgT0ye3bD2nLwZ not found in collection staff", field="face_id")
# a detect task's index or search option naming a collection the caller does not have
OPTION_COLLECTION_NOT_FOUND = NotFound("collection staff not found", field="index.collection_id")
BATCH_NOT_FOUND = NotFound(f"batch {EXAMPLE_BATCH_ID} not found", field="batch_id")
PERSONS_NOT_REQUESTED = PersonsNotRequested(
    f"batch {EXAMPLE_BATCH_ID} was not submitted with persons: true, so it has no batch-wide persons", field="batch_id"
)
TASK_FINAL = TaskFinal(
    f"detect task {EXAMPLE_TASK_ID} is already succeeded: there is nothing to cancel, and its result is kept "
    f"(DELETE /v1/detect/{EXAMPLE_TASK_ID} deletes it)",
    field="detect_task_id",
)
NOTHING_TO_REDELIVER = NothingToRedeliver(
    "the task has no webhook event: it is not final, or has neither a callback_url nor a tenant webhook_url",
    field="detect_task_id",
)
ENDPOINT_DISABLED = EndpointDisabled(
    "https://hooks.example.com/facequeue answered 410 Gone; no more deliveries are made to it", field="url"
)
NO_TENANT = NoTenant(
    "webhook endpoints belong to tenants, and this request has none (FACEQUEUE_AUTH=off): give each task a "
    "callback_url instead"
)
ROTATION_CONFLICT = RotationConflict(
    "another rotation of this secret happened at the same moment: read the current secret "
    "(GET /v1/webhook-endpoint/secret) or rotate again"
)

MEANINGS = {
    400: "Bad request",
    401: "Missing or invalid API key",
    402: "Not enough credits for the work asked",
    404: "No such resource for this API key",
    409: "Conflicts with the resource's state",
    413: "Body larger than the route's limit (the connection is closed)",
    422: "Invalid request",
    429: "Rate limit of the API key exceeded; retry after Retry-After seconds",
    455: "Maintenance: no new tasks are accepted, polling still works",
    503: "The database or Redis did not answer; retry after Retry-After seconds",
    504: "The task did not finish within FACEQUEUE_SYNC_TIMEOUT; it keeps running",
    505: "A feature the request needs is disabled",
}
RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}


class TaskFailed(ServiceError):
    """A synchronous call's task failed: no error is raised, the route answers as its seed says. Rendered
    like an error here, since each API answers it in its error shape."""

    code = "task_failed"
    meaning = "The task failed (its media could not be fetched or processed)"

    def __init__(self, message: str, status_code: int = 500) -> None:
        super().__init__(message)
        self.status_code = status_code


def schema_ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


@dataclass(frozen=True)
class ErrorDocs:
    """One API's (or endpoint's) errors: how it renders them, and the model of what it renders."""

    render: ErrorRenderer
    model: type[BaseModel]

    def responses(self, *errors: int | ServiceError) -> dict[int | str, dict[str, Any]]:
        """OpenAPI responses for `errors` (a status's typical error, or an error), grouped by the status
        this API answers them with."""
        declared: dict[int | str, dict[str, Any]] = {}
        for error in (TYPICAL_ERRORS[e] if isinstance(e, int) else e for e in errors):
            rendered = self.render(error)
            response = declared.setdefault(
                rendered.status_code,
                {"description": "", "content": {JSON: {"schema": schema_ref(self.model), "examples": {}}}},
            )
            meaning = getattr(error, "meaning", None) or MEANINGS[error.status_code]
            response["description"] = "; ".join(filter(None, (response["description"], meaning)))
            examples = response["content"][JSON]["examples"]
            name = error.code if error.code not in examples else f"{error.code}_{len(examples)}"
            examples[name] = {"summary": meaning, "value": json.loads(rendered.body)}
            if "Retry-After" in error.headers:
                response.setdefault("headers", {})["Retry-After"] = RETRY_AFTER
        for status, response in declared.items():
            if int(status) < 400:  # an API that answers errors with a success status (Akool's detect_faces)
                response["description"] = f"Success, or an error: {response['description']}"
        return declared


NATIVE_ERRORS = ErrorDocs(native_error, NativeError)
