"""Error shapes: the native API's, and the route class that gives each compat router its seed API's own.

Every error, whether a service raises it or FastAPI/Starlette does (validation, body parsing, routing,
body limits), becomes a ServiceError first and is then rendered by the API the request addressed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.types import Scope

from api.errors import (
    InternalError,
    InvalidInput,
    InvalidJson,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    ServiceUnavailable,
)
from api.json_input import json_error
from db.engine import DATABASE_UNAVAILABLE
from facequeue.plumbing.broker import BROKER_UNAVAILABLE

log = structlog.get_logger(__name__)

ErrorRenderer = Callable[[ServiceError], Response]
# The database or Redis did not answer (or broke the connection): a 503 the client may retry, not a bug.
BACKEND_UNAVAILABLE = (*DATABASE_UNAVAILABLE, *BROKER_UNAVAILABLE)


def native_error(error: ServiceError) -> JSONResponse:
    body = {"error": {"code": error.code, "message": error.message, "field": error.field}}
    return JSONResponse(body, status_code=error.status_code)


def shaped_response(render: ErrorRenderer, error: ServiceError) -> Response:
    response = render(error)
    response.headers.update(error.headers)
    return response


class ServiceHTTPException(HTTPException):
    """A ServiceError raised where only an HTTPException passes unchanged: from `receive`, while FastAPI reads
    the body (it turns any other exception there into a 400 "There was an error parsing the body")."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(status_code=error.status_code, detail=error.message)
        self.error = error


# Our wording of the validation problems clients meet, so that upgrading pydantic never changes what an API
# says; a problem not listed keeps pydantic's message. {plural} is "s" unless the length named is 1.
VALIDATION_MESSAGES = {
    "missing": "Field required",
    "greater_than_equal": "Input should be greater than or equal to {ge}",
    "less_than_equal": "Input should be less than or equal to {le}",
    "greater_than": "Input should be greater than {gt}",
    "less_than": "Input should be less than {lt}",
    "literal_error": "Input should be {expected}",
    "enum": "Input should be {expected}",
    "string_too_long": "String should have at most {max_length} character{plural}",
    "string_too_short": "String should have at least {min_length} character{plural}",
    "string_type": "Input should be a valid string",
    "string_pattern_mismatch": "String should match pattern '{pattern}'",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "int_type": "Input should be a valid integer",
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "float_parsing": "Input should be a valid number, unable to parse string as a number",
    "float_type": "Input should be a valid number",
    "finite_number": "Input should be a finite number",
    "bool_parsing": "Input should be a valid boolean, unable to interpret input",
    "bool_type": "Input should be a valid boolean",
    "list_type": "Input should be a valid list",
    "dict_type": "Input should be a valid dictionary",
    "model_attributes_type": "Input should be a valid dictionary or object to extract fields from",
    "too_long": "{field_type} should have at most {max_length} item{plural} after validation, not {actual_length}",
    "too_short": "{field_type} should have at least {min_length} item{plural} after validation, not {actual_length}",
    "extra_forbidden": "Extra inputs are not permitted",
    "value_error": "Value error, {error}",
}


def problem_message(problem: Mapping[str, Any]) -> str:
    """One validation problem (an item of ValidationError.errors()) in our words."""
    template = VALIDATION_MESSAGES.get(problem["type"])
    # a bound of 1.0 reads "1", as clients have always seen it
    context = {key: _plain_number(value) for key, value in (problem.get("ctx") or {}).items()}
    context["plural"] = "" if context.get("max_length", context.get("min_length")) == 1 else "s"
    try:
        return template.format(**context) if template else problem["msg"]
    except (KeyError, IndexError):  # a context this template doesn't know: pydantic's message still says it
        return problem["msg"]


def _plain_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def validation_error(error: RequestValidationError | ValidationError) -> ServiceError:
    """The first problem, naming the field, as a 422 the compat renderers understand."""
    first = error.errors()[0]
    if first["type"] == "json_invalid":  # FastAPI's own parse of a JSON body; loc is ("body", character)
        return InvalidJson(f"body is not valid JSON: {first['ctx']['error']} (character {first['loc'][-1]})", "body")
    field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query")) or None
    message = problem_message(first)
    return InvalidInput(message if field is None else f"{field}: {message}", field=field)


def http_error(error: HTTPException, scope: Scope) -> ServiceError:
    """Starlette's and FastAPI's own HTTP errors (routing, body parsing) as the ServiceError every API shapes."""
    if isinstance(error, ServiceHTTPException):
        return error.error
    if error.status_code == 400 and isinstance(error.__cause__, RecursionError | UnicodeDecodeError):
        return json_error("body", error.__cause__)
    method, path = scope["method"], scope["path"]
    if error.status_code == 404:
        return NotFound(f"No endpoint matches {method} {path}")
    if error.status_code == 405:
        allow = (error.headers or {}).get("Allow", "")
        return MethodNotAllowed(f"{method} is not allowed on {path} (allowed: {allow})", allow)
    other = ServiceError(str(error.detail))
    other.status_code = error.status_code
    return other


def unexpected_error(error: Exception, event: str, path: str) -> ServiceError:
    """An exception no service turned into a ServiceError, called from its `except` block: a backend that
    is away gives a 503 (logged as a warning), anything else is a bug, a 500 (logged with its traceback).
    Neither message names anything internal."""
    if isinstance(error, BACKEND_UNAVAILABLE):
        log.warning(event, path=path, unavailable=type(error).__name__)
        return ServiceUnavailable()
    log.exception(event, path=path)
    return InternalError("Internal server error")


def shaped_route(render: ErrorRenderer) -> type[APIRoute]:
    """A route class whose validation and service errors come out in the compat API's own shape."""

    class ShapedRoute(APIRoute):
        render_error = staticmethod(render)  # for errors raised before the route runs (api/limits.py)

        def get_route_handler(self):
            handler = super().get_route_handler()

            async def shaped_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    return shaped_response(render, validation_error(error))
                except ServiceError as error:
                    return shaped_response(render, error)
                except HTTPException as error:
                    return shaped_response(render, http_error(error, request.scope))
                except Exception as error:  # every answer keeps the API's shape, even a bug's
                    return shaped_response(render, unexpected_error(error, "compat_handler_failed", request.url.path))

            return shaped_handler

    return ShapedRoute
