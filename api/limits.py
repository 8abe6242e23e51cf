"""Body limits and the API key, enforced at the ASGI layer before FastAPI reads a byte of the body.

FastAPI reads a JSON body whole before any dependency (auth included) runs: 300 MiB sent without a key
to /face/analyze peaked the API at 759 MB for its 401 (issue 10). Here, per request:
- the route's body limit: an upload's base64 plus room for the JSON around it; for the file itself as the body
  of POST /v1/detect, FACEQUEUE_MAX_UPLOAD_BYTES (plus room for multipart's envelope); for a JSONL manifest on
  POST /v1/batches, FACEQUEUE_MAX_MANIFEST_BYTES. A declared Content-Length over it is refused at once;
  a chunked body is cut off where it passes it. Both are 413.
- the API key, from the headers alone, for every route that depends on the caller (api/deps.py).
Every refusal comes out in the error shape of the API the request addressed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import CALLER_SCOPE_KEY, request_caller
from api.compat import ErrorRenderer, ServiceHTTPException, native_error, shaped_response, unexpected_error
from api.deps import current_caller
from api.errors import InvalidInput, NotFound, PayloadTooLarge, ServiceError
from api.uploads import UploadRoute, upload_body_limit, upload_kind
from facequeue.core.settings import Settings

JSONL_CONTENT_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})


def is_jsonl(content_type: str | None) -> bool:
    """Whether a Content-Type names a JSONL body (given the first header, as Starlette and FastAPI read it)."""
    return (content_type or "").split(";")[0].strip().lower() in JSONL_CONTENT_TYPES


def json_body_limit(settings: Settings) -> int:
    # base64 inflates by 4/3; leave room for the JSON around it
    return settings.max_upload_bytes * 4 // 3 + 64 * 1024


@dataclass(frozen=True)
class RoutePolicy:
    render: ErrorRenderer
    needs_caller: bool = False
    takes_jsonl: bool = False
    takes_upload: bool = False  # an UploadRoute: the request's Content-Type is an upload's
    query_names: frozenset[str] = frozenset()


class RouteTable:
    """The API routes with what the limits need: the error shape, whether the caller is needed, whether a
    JSONL manifest is accepted. Routes outside it (docs, static files) answer in the native shape."""

    def __init__(self, routers: Iterable[APIRouter], jsonl_endpoints: Collection[Callable]) -> None:
        self._routes = [
            (
                route,
                RoutePolicy(
                    render=getattr(route, "render_error", native_error),
                    needs_caller=_depends_on(route.dependant, current_caller),
                    takes_jsonl=route.endpoint in jsonl_endpoints,
                    takes_upload=isinstance(route, UploadRoute),
                    query_names=_query_names(route.dependant),
                ),
            )
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
        ]
        # A path no route matches still gets the shape of the API whose folder it is in (longest first).
        folders = {(route.path.rsplit("/", 1)[0] + "/", policy.render) for route, policy in self._routes}
        self._folders = sorted(folders, key=lambda folder: -len(folder[0]))

    def policy_for(self, scope: Scope) -> RoutePolicy:
        partial = None
        for route, policy in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return policy
            if match is Match.PARTIAL and partial is None:
                partial = policy
        if partial is not None:  # the path exists, the method does not: a 405 is coming, in this API's shape
            return RoutePolicy(render=partial.render)
        path = scope["path"]
        return RoutePolicy(render=next((r for folder, r in self._folders if path.startswith(folder)), native_error))


def _depends_on(dependant: Dependant, call: Callable) -> bool:
    return any(sub.call is call or _depends_on(sub, call) for sub in dependant.dependencies)


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    return frozenset(names.union(*(_query_names(sub) for sub in dependant.dependencies)))


class RequestLimits:
    """ASGI middleware: the route's body limit while streaming, and the API key before the body is read."""

    def __init__(self, app: ASGIApp, routes: RouteTable, settings: Settings) -> None:
        self.app = app
        self.routes = routes
        self.settings = settings
        self.json_limit = json_body_limit(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        policy = self.routes.policy_for(scope)
        content_type = headers.get("content-type")
        if policy.takes_jsonl and is_jsonl(content_type):
            limit, what = self.settings.max_manifest_bytes, "the JSONL manifest"
        elif policy.takes_upload:
            limit, what = upload_body_limit(upload_kind(content_type), self.settings.max_upload_bytes), "the upload"
        else:
            limit, what = self.json_limit, "the request body"
        too_large = PayloadTooLarge(f"{what} is larger than {limit} bytes")
        if _declared_length(headers) > limit:
            await self._refuse(policy, too_large, headers, scope, receive, send)
            return
        if policy.needs_caller:
            try:
                scope[CALLER_SCOPE_KEY] = await request_caller(headers, self.settings)
            except ServiceError as error:
                await self._refuse(policy, error, headers, scope, receive, send)
                return
            except Exception as error:  # the answer keeps the API's shape even when the key lookup itself fails
                refusal = unexpected_error(error, "authentication_failed", scope["path"])
                await self._refuse(policy, refusal, headers, scope, receive, send)
                return
        nul = _nul_in_path_or_query(scope, policy)
        if nul is not None:
            await self._refuse(policy, nul, headers, scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ServiceHTTPException(too_large)  # rendered by the route's own error handling
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _refuse(
        policy: RoutePolicy, error: ServiceError, headers: Headers, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = shaped_response(policy.render, error)
        if "transfer-encoding" in headers or _declared_length(headers):
            # a body we will never read: close rather than let the server receive and drop all of it
            response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _nul_in_path_or_query(scope: Scope, policy: RoutePolicy) -> ServiceError | None:
    """Postgres text can't hold a NUL character (psycopg raised DataError, a 500, found by fuzzing), and no id,
    cursor or filter of this API has one: a path with one names nothing, a query parameter with one is invalid."""
    if "\x00" in scope["path"]:
        return NotFound("No resource has a NUL character in its path")
    for name, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
        if name in policy.query_names and "\x00" in value:
            return InvalidInput(f"{name}: must not contain a NUL character", field=name)
    return None


def _declared_length(headers: Headers) -> int:
    """The largest Content-Length declared (0 if none): a duplicate must not smuggle a larger body past."""
    return max((int(value) for value in headers.getlist("content-length") if value.strip().isdigit()), default=0)
