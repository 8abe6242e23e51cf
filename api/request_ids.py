"""Request ids and request logs: one log line per HTTP request, and an id that ties it to every other line.

An incoming `X-Request-ID` is kept when it is short and made of safe characters (so a proxy's or a caller's
id can be followed through), otherwise a new one is made. The id is bound to structlog's context for the
request and returned in the response's `X-Request-ID` header.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable

import structlog
from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode()  # as ASGI spells it
# UUIDs, ULIDs, hex and W3C trace ids fit; anything else (long, spaces, quotes, control bytes) is replaced,
# so a caller cannot forge log structure or flood lines through it.
ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

log = structlog.get_logger(__name__)


def request_id_from(raw: bytes | None) -> str:
    """The caller's id when acceptable, else a fresh one."""
    if raw is not None:
        candidate = raw.decode("latin-1")
        if ACCEPTED_REQUEST_ID.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex


class RequestIds:
    """Pure ASGI (no response buffering): streams and large uploads pass through untouched."""

    def __init__(self, app: ASGIApp, routers: Iterable[APIRouter]) -> None:
        self.app = app
        # what a request refused before routing (401, 413 by api/limits.py) is matched against for its template
        self.routes = [route for router in routers for route in router.routes if isinstance(route, APIRoute)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(next((value for name, value in scope["headers"] if name == _HEADER_NAME), None))
        method, path = scope["method"], scope["path"]
        status = 500  # what the server answers when the app raises before it starts a response
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                log.info(
                    "request",
                    method=method,
                    route=self.route_template(scope),
                    path=path,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 1),
                )

    def route_template(self, scope: Scope) -> str | None:
        """The path template of the route the request addressed (None: no route matches), which keeps lines
        groupable: the router's match, else (refused before routing) the first API route that matches."""
        route = scope.get("route") or next(
            (route for route in self.routes if route.matches(scope)[0] == Match.FULL), None
        )
        return getattr(route, "path", None)
