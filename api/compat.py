"""Shared plumbing of the compat routers: each seed API renders errors in its own shape."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from api.errors import InternalError, InvalidInput, ServiceError

log = structlog.get_logger(__name__)

ErrorRenderer = Callable[[ServiceError], Response]


def validation_error(error: RequestValidationError) -> ServiceError:
    """The first problem, naming the field, as a 422 the compat renderers understand."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query")) or None
    message = first["msg"] if field is None else f"{field}: {first['msg']}"
    return InvalidInput(message, field=field)


def shaped_route(render: ErrorRenderer) -> type[APIRoute]:
    """A route class whose validation and service errors come out in the compat API's own shape."""

    class ShapedRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def shaped_handler(request: Request) -> Response:
                try:
                    return await handler(request)
                except RequestValidationError as error:
                    return render(validation_error(error))
                except ServiceError as error:
                    response = render(error)
                    response.headers.update(error.headers)
                    return response
                except Exception:  # every answer keeps the API's shape, even a bug's
                    log.exception("compat_handler_crashed", path=request.url.path)
                    return render(InternalError("Internal server error"))

            return shaped_handler

    return ShapedRoute
