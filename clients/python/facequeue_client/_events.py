"""`wait` on a task's Server-Sent Events (GET /v1/detect/{id}/events) instead of polling: one request while the task
runs, a snapshot on each change of status and for each finished frame (with the frames so far in
`Task.partial_faces_obj`), and the whole task read once when the final event comes.

A server without the stream, or something in between that answers anything but an event stream, is polled
instead (`_flows.Poller`). A stream that breaks is opened again with `Last-Event-ID`, so no frame is lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from facequeue_client._flows import CloseStream, Flow, Poller, PollPolicy, ReadLine, Send, Sleep
from facequeue_client.errors import FacequeueError
from facequeue_client.models import FINAL_STATUSES, Frame, Progress, Task

# The server sends a comment after 15 s of silence: three missed in a row, and the stream is taken for gone.
SILENCE_LIMIT = 45.0
BROKEN_STREAMS_BEFORE_POLLING = 3  # streams in a row that ended without an event


@dataclass
class ServerSentEvent:
    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None


class EventParser:
    """Lines in, events out, as the HTML standard's EventSource reads them (comments and unknown fields ignored)."""

    def __init__(self) -> None:
        self._pending = ServerSentEvent()

    def feed(self, line: str) -> ServerSentEvent | None:
        if line == "":
            event, self._pending = self._pending, ServerSentEvent()
            return event if event.data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._pending.event = value
        elif name == "data":
            self._pending.data.append(value)
        elif name == "id":
            self._pending.id = value
        return None


class EventStream:
    """A task's snapshots from its event stream; the same `next` as `Poller`, which it falls back to."""

    def __init__(
        self,
        task_id: str,
        path: str,
        call: Callable[[Send, Callable[[httpx.Response], Any]], Flow[Any]],
        get: Callable[[], Flow[Task]],
        policy: PollPolicy,
    ) -> None:
        self.task_id = task_id
        self.path = path
        self.call = call
        self.get = get
        self.policy = policy
        self.polling: Poller[Task] | None = None
        self.response: httpx.Response | None = None
        self.parser = EventParser()
        self.last_event_id: str | None = None
        self.broken = 0
        self.snapshot: Task | None = None
        self.frames: dict[str, Frame] = {}

    def next(self, seconds_left: float | None) -> Flow[Task]:
        if self.polling is not None:
            return (yield from self.polling.next(seconds_left))
        deadline = None if seconds_left is None else time.monotonic() + seconds_left
        while True:
            if self.response is None and not (yield from self._open(deadline)):
                self.polling = Poller(self.get, self.policy)
                return (yield from self.polling.next(seconds_left))
            line = yield ReadLine(self.response)
            if line is None:  # ended, broke, or silent too long: open it again where it stopped
                yield CloseStream(self.response)
                self.response = None
                self.broken += 1
                if self._past(deadline):
                    return (yield from self._last_snapshot())
                if self.broken >= BROKEN_STREAMS_BEFORE_POLLING:
                    self.polling = Poller(self.get, self.policy)
                    return (yield from self.polling.next(seconds_left))
                yield Sleep(self.policy.first)
                continue
            event = self.parser.feed(line)
            if event is not None:
                self.broken = 0
                if event.event == "final":
                    yield CloseStream(self.response)
                    self.response = None
                    return (yield from self.get())  # the task as polling would have returned it
                snapshot = self._apply(event)
                if snapshot is not None:
                    return snapshot
            if self._past(deadline):  # checked at each line: heartbeats come every 15 s at most
                return (yield from self._last_snapshot())

    def _open(self, deadline: float | None) -> Flow[bool]:
        silence = SILENCE_LIMIT if deadline is None else max(0.1, min(SILENCE_LIMIT, deadline - time.monotonic()))
        headers = {"Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        try:
            send = Send("GET", self.path, headers=headers, stream=True, timeout=silence)
            response = yield from self.call(send, _unread)
        except FacequeueError:  # no stream here (or a proxy answered): polling says what is wrong, if anything
            return False
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            yield CloseStream(response)
            return False
        self.response, self.parser = response, EventParser()
        return True

    def _apply(self, event: ServerSentEvent) -> Task | None:
        """The new snapshot, or None when there is nothing to report yet (a final status: its `final` follows)."""
        data = json.loads("\n".join(event.data))
        if event.id is not None:
            self.last_event_id = event.id
        if event.event == "status":
            status, kind = data["status"], data["kind"]
        elif event.event == "progress":
            self.frames.update({key: Frame.model_validate(entry) for key, entry in data["faces_obj"].items()})
            status = self.snapshot.status if self.snapshot is not None else "processing"
            kind = self.snapshot.kind if self.snapshot is not None else None
        else:
            return None
        self.snapshot = Task(
            detect_task_id=self.task_id,
            status=status,
            kind=kind,
            progress=Progress.model_validate(data["progress"]),
            partial_faces_obj=dict(self.frames),
        )
        return None if status in FINAL_STATUSES else self.snapshot

    def _last_snapshot(self) -> Flow[Task]:
        if self.snapshot is not None:
            return self.snapshot
        return (yield from self.get())

    @staticmethod
    def _past(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline


def _unread(response: httpx.Response) -> httpx.Response:
    return response
