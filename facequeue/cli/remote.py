"""How the client commands reach a running service (FACEQUEUE_SERVER, FACEQUEUE_API_KEY), and the one line each
failure becomes, with what to do about it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from facequeue.cli.console import fail

if TYPE_CHECKING:
    from facequeue_client import Client, FacequeueError

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="FACEQUEUE_SERVER",
        show_default=False,
        help="the service's URL [default: where `facequeue serve` listens by default, on this machine]",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="FACEQUEUE_API_KEY", show_default=False, help="sent as Authorization: Bearer"),
]
REQUEST_TIMEOUT = 30.0  # one request; uploads of large videos are stored before the answer
URL_FORBIDDEN_HINT = (
    "it refuses private and local addresses; its operator can allow a host with FACEQUEUE_ALLOWED_HOSTS"
)


@contextmanager
def connect(server: str | None, api_key: str | None) -> Iterator[Client]:
    """A client; every API or connection error raised inside becomes one line and exit status 1."""
    from facequeue_client import Client, FacequeueError

    with Client(server, api_key, timeout=REQUEST_TIMEOUT) as client:
        try:
            yield client
        except FacequeueError as error:
            fail(*explain(error, client.base_url))


def explain(error: FacequeueError, server: str) -> tuple[str, str | None]:
    """What went wrong, and the hint that fixes it."""
    from facequeue_client import ConnectionFailed, InsufficientCredits, Maintenance, NotFound, RateLimited, Unauthorized

    if isinstance(error, ConnectionFailed):
        reason = error.__cause__ or error.code
        what = "no answer in time from" if error.code == "timeout" else "cannot reach"
        return (
            f"{what} the facequeue server at {server} ({reason})",
            f"is `facequeue serve` running? FACEQUEUE_SERVER={server} (or --server) says where it listens",
        )
    if isinstance(error, Unauthorized):
        return (
            f"the server refused the request: {error.message}",
            "make a key with `facequeue keys create --tenant NAME` where the service runs, "
            "then pass it as FACEQUEUE_API_KEY (or --api-key)",
        )
    if error.code == "url_forbidden":
        return f"the server may not fetch this URL: {error.message}", URL_FORBIDDEN_HINT
    if isinstance(error, NotFound):
        return error.message, "`facequeue list` shows your tasks"
    if isinstance(error, InsufficientCredits):
        return error.message, "the operator sets credits with `facequeue keys create --tenant NAME --credits N`"
    if isinstance(error, RateLimited):
        return error.message, f"try again in {error.retry_after or 1:g}s"
    if isinstance(error, Maintenance):
        return error.message, "the service takes no new work until its operator runs `facequeue maintenance off`"
    return str(error), None
