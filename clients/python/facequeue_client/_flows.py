"""The client's logic, written once for Client and AsyncClient.

Each operation is a generator (a "flow") that yields what it needs done, `Send` a request, `Sleep`,
`Emit` an item to the caller, or `ReadLine`/`CloseStream` on a streamed response, and is sent back the
outcome (the `httpx.Response` of a `Send`, the line read). It never does I/O itself, so the sync and async
clients only differ in how they perform those.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx

from facequeue_client.errors import WaitTimeout, raise_for_error, retry_after_seconds

T = TypeVar("T")

RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Send:
    method: str
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # bytes are sent again on a retry; an iterable body is streamed once, never retried
    content: bytes | Iterable[bytes] | AsyncIterable[bytes] | None = None
    stream: bool = False  # leave the (successful) response body unread, for the caller to iterate
    timeout: float | None = None  # instead of the client's: a stream's longest silence

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of httpx's build_request; unset query parameters are left out."""
        arguments = {
            "method": self.method,
            "url": self.path,
            "params": {name: value for name, value in self.params.items() if value is not None},
            "json": self.json,
            "headers": dict(self.headers),
            "content": self.content,
        }
        if self.timeout is not None:
            arguments["timeout"] = httpx.Timeout(self.timeout)
        return arguments


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    item: Any


@dataclass(frozen=True)
class ReadLine:
    """The next line of a response sent with `stream=True`; None once it ended, broke or timed out."""

    response: httpx.Response


@dataclass(frozen=True)
class CloseStream:
    response: httpx.Response


Action = Send | Sleep | Emit | ReadLine | CloseStream
Flow = Generator[Action, Any, T]


def step(flow: Flow[Any], outcome: Any) -> Action | None:
    """Resume a flow with the outcome of its last action; its next action, or None once it is done."""
    try:
        return flow.send(outcome)
    except StopIteration:
        return None


def single(flow: Flow[T]) -> Flow[None]:
    """A flow that emits the value of another one, so the clients drive every flow with one loop."""
    yield Emit((yield from flow))


@dataclass(frozen=True)
class RetryPolicy:
    """How a request answered 429 or 503 is retried."""

    attempts: int = 5  # tries in all, the first included
    max_wait: float = 30.0  # longest Retry-After honoured; a longer one is not waited for
    backoff: float = 0.5  # first pause when the answer has no Retry-After, doubled each time

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None when this answer is final."""
        if response.status_code not in RETRIED_STATUSES or attempt >= self.attempts:
            return None
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        if retry_after is None:
            return min(self.backoff * 2 ** (attempt - 1), self.max_wait)
        return retry_after if retry_after <= self.max_wait else None


def call(send: Send, parse: Callable[[httpx.Response], T], retry: RetryPolicy) -> Flow[T]:
    """One API call: retried on 429/503 with the very same request (so the same Idempotency-Key), then parsed."""
    attempt = 0
    while True:
        attempt += 1
        response: httpx.Response = yield send
        replayable = send.content is None or isinstance(send.content, bytes)
        delay = retry.delay(response, attempt) if replayable else None
        if delay is None:
            raise_for_error(response)
            return parse(response)
        yield Sleep(delay)


def paged(path: str, params: Mapping[str, Any], parse_item: Callable[[Any], Any], retry: RetryPolicy) -> Flow[None]:
    """Emit every item of a cursor-paged listing (`{"items", "next_cursor"}`), fetching pages as they are needed."""
    cursor = None
    while True:
        page = yield from call(Send("GET", path, params={**params, "cursor": cursor}), _json, retry)
        for item in page["items"]:
            yield Emit(parse_item(item))
        cursor = page.get("next_cursor")
        if not cursor:
            return


def _json(response: httpx.Response) -> Any:
    return response.json()


@dataclass(frozen=True)
class PollPolicy:
    """How `wait` polls: a pause that starts short (quick tasks return fast) and grows (long ones cost few calls)."""

    first: float = 0.25
    growth: float = 1.5
    longest: float = 4.0


class Snapshot(Protocol):
    """A task or a batch as `waiting` watches it."""

    status: str

    @property
    def is_final(self) -> bool: ...

    @property
    def progress_marker(self) -> tuple[Any, ...]: ...

    @property
    def ref(self) -> str: ...


S = TypeVar("S", bound=Snapshot)


class Poller(Generic[S]):
    """Snapshots from polling a GET with a growing pause. For tasks, `_events.EventStream` is a second source
    with the same `next` method (GET /v1/detect/{id}/events), which falls back to this one."""

    def __init__(self, fetch: Callable[[], Flow[S]], policy: PollPolicy) -> None:
        self.fetch = fetch
        self.policy = policy
        self.pause: float | None = None

    def next(self, seconds_left: float | None) -> Flow[S]:
        if self.pause is not None:
            yield Sleep(self.pause if seconds_left is None else max(0.0, min(self.pause, seconds_left)))
            self.pause = min(self.pause * self.policy.growth, self.policy.longest)
        else:
            self.pause = self.policy.first
        return (yield from self.fetch())


def waiting(snapshots: Poller[S], timeout: float | None, on_progress: Callable[[S], Any] | None) -> Flow[S]:
    """Until the task or batch is final: `on_progress(snapshot)` on each change of status or progress;
    WaitTimeout after `timeout` seconds (None: no limit)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = None
    while True:
        seconds_left = None if deadline is None else deadline - time.monotonic()
        snapshot = yield from snapshots.next(seconds_left)
        if on_progress is not None and snapshot.progress_marker != seen:
            seen = snapshot.progress_marker
            on_progress(snapshot)
        if snapshot.is_final:
            return snapshot
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(snapshot, timeout)
