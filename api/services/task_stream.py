"""One task's live events as Server-Sent Events (GET /v1/detect/{id}/events).

- `status` on every change of status (`{"status", "kind", "progress": {"done", "total"}}`), the first one at
  once, from the one database read a stream makes when it opens;
- `progress` for each finished frame, with id = frames done so far (`{"frame", "faces_obj": {frame: entry},
  "scores": {frame: [...]}, "progress"}`), the entry exactly as it will be in the result;
- `final` once (`{"status", "result_url", "error"}`), after which the stream closes.

A stream that opens, or resumes with `Last-Event-ID: N`, mid-run gets the frames after N from the task's event
log; once the task is final, from its stored result. A comment every FACEQUEUE_EVENTS_HEARTBEAT seconds of
silence keeps proxies from closing it.

The stream's API key is checked again every FACEQUEUE_EVENTS_HEARTBEAT seconds, events or not: once it is
revoked, one `unauthorized` event (`{"code": "unauthorized", "message"}`) ends the stream, and reconnecting
with the key answers 401.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from api.auth import Caller
from api.errors import InvalidInput, Unauthorized
from api.rendering import LinkFn, frames_with_links
from api.services.detect import owned_task
from api.services.event_hub import REREAD, Subscription, TaskEventHub
from db import tenants
from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import DetectResult
from facequeue.plumbing.sessions import get_sessionmaker

HEARTBEAT = b": keep-alive\n\n"
KEY_REVOKED = "The API key of this stream was revoked: the stream has ended"


@dataclass(frozen=True)
class TaskState:
    status: TaskStatus
    kind: str | None
    done: int
    total: int
    error: dict[str, str] | None
    result: DetectResult | None


def read_state(task_id: str, tenant_id: str | None) -> TaskState:
    """The stream's one read (and a re-read when told to): a short session of its own, never held open."""
    with get_sessionmaker()() as session:
        task = owned_task(session, task_id, tenant_id)
        return TaskState(
            status=TaskStatus(task.status),
            kind=task.kind,
            done=task.progress_done,
            total=task.progress_total,
            error={"code": task.error_code, "message": task.error_msg or ""} if task.error_code else None,
            result=DetectResult.model_validate(task.result) if task.result else None,
        )


def key_revoked(key_id: str) -> bool:
    with get_sessionmaker()() as session:
        return not tenants.key_is_active(session, key_id)


def last_event_id(header: str | None) -> int:
    if header is None or header == "":
        return 0
    if not header.isdigit():
        raise InvalidInput("Last-Event-ID must be an event id of this stream: the frames seen so far", "Last-Event-ID")
    return int(header)


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def open_task_stream(
    hub: TaskEventHub,
    task_id: str,
    caller: Caller,
    seen: int,
    link: LinkFn,
    result_url: str,
    heartbeat: float,
) -> AsyncIterator[bytes]:
    """Subscribe, then read the task (so nothing announced in between is missed): NotFound for a task the
    caller may not see, before any byte is streamed."""
    subscription = await hub.subscribe(task_id)
    try:
        state = await anyio.to_thread.run_sync(read_state, task_id, caller.tenant_id)
    except BaseException:
        await subscription.close()
        raise
    stream = TaskStream(task_id, caller, seen, link, result_url)
    return stream.run(subscription, state, heartbeat)


class TaskStream:
    def __init__(self, task_id: str, caller: Caller, seen: int, link: LinkFn, result_url: str) -> None:
        self.task_id = task_id
        self.tenant_id = caller.tenant_id
        self.key_id = caller.key_id  # None with FACEQUEUE_AUTH=off
        self.sent = seen  # frames the client has: progress events with an id above it are sent
        self.link = link
        self.result_url = result_url
        self.status: TaskStatus | None = None
        self.kind: str | None = None
        self.db_done = 0
        self.total = 0
        self.finished = False

    async def run(self, subscription: Subscription, state: TaskState, heartbeat: float) -> AsyncIterator[bytes]:
        try:
            for chunk in await self._catch_up(subscription, state):
                yield chunk
            key_checked_at = time.monotonic()
            while not self.finished:
                with anyio.move_on_after(heartbeat) as silence:
                    event = await subscription.events.get()
                if time.monotonic() - key_checked_at >= heartbeat:
                    key_checked_at = time.monotonic()
                    if await self._key_revoked():
                        yield sse("unauthorized", {"code": Unauthorized.code, "message": KEY_REVOKED})
                        return
                if silence.cancelled_caught:
                    yield HEARTBEAT
                    continue
                chunks = (
                    await self._catch_up(subscription, await self._read()) if event is REREAD else await self._on(event)
                )
                for chunk in chunks:
                    yield chunk
        finally:
            with anyio.CancelScope(shield=True):  # a client that went away still gives its subscription back
                await subscription.close()

    async def _catch_up(self, subscription: Subscription, state: TaskState) -> list[bytes]:
        """The task as read, then the frames its log holds (while it runs: its statuses are older than the read)."""
        chunks = self._from_state(state)
        if not self.finished:
            for event in await subscription.history():
                if event["kind"] == "frame":
                    chunks += self._frame(event)
        return chunks

    async def _on(self, event: dict[str, Any]) -> list[bytes]:
        if event["kind"] == "frame":
            return self._frame(event)
        status = TaskStatus(event["status"])
        if not status.is_final:
            return self._status(status)
        if status == TaskStatus.SUCCEEDED and (self.total == 0 or self.sent < self.total):
            return self._from_state(await self._read())  # frames were missed: the result has every one
        return self._final(status, event["error"])

    async def _key_revoked(self) -> bool:
        if self.key_id is None:
            return False
        try:
            return await anyio.to_thread.run_sync(key_revoked, self.key_id)
        except DATABASE_UNAVAILABLE:  # an outage ends no stream: the next check decides
            return False

    async def _read(self) -> TaskState:
        return await anyio.to_thread.run_sync(read_state, self.task_id, self.tenant_id)

    def _from_state(self, state: TaskState) -> list[bytes]:
        self.kind = state.kind or self.kind
        self.db_done = max(self.db_done, state.done)
        self.total = state.total or self.total
        chunks = self._status(state.status)
        if state.status.is_final:
            if state.result is not None:
                chunks += self._replay(state.result)
            chunks += self._final(state.status, state.error)
        return chunks

    def _replay(self, result: DetectResult) -> list[bytes]:
        """The stored result's frames after the ones already sent, in the order they were analysed."""
        frames = frames_with_links(result, self.link)
        keys = sorted(frames, key=int)
        self.total = len(keys)
        chunks = []
        for done, key in enumerate(keys, start=1):
            if done > self.sent:
                entry = frames[key].model_dump(mode="json")
                chunks.append(self._progress(done, key, entry, result.scores.get(key, [])))
        return chunks

    def _frame(self, event: dict[str, Any]) -> list[bytes]:
        if event["done"] <= self.sent:
            return []
        chunks = self._status(TaskStatus.PROCESSING) if self.status == TaskStatus.QUEUED else []
        self.total = event["total"]
        entry = dict(event["entry"])
        if event["crop_keys"] is not None:
            entry["face_urls"] = [self.link(key) for key in event["crop_keys"]]
        return [*chunks, self._progress(event["done"], event["frame"], entry, event["scores"])]

    def _progress(self, done: int, frame: str, entry: dict[str, Any], scores: list[float]) -> bytes:
        self.sent = done
        data = {"frame": frame, "faces_obj": {frame: entry}, "scores": {frame: scores}, "progress": self._counts()}
        return sse("progress", data, done)

    def _status(self, status: TaskStatus) -> list[bytes]:
        if status == self.status:
            return []
        self.status = status
        return [sse("status", {"status": status, "kind": self.kind, "progress": self._counts()})]

    def _final(self, status: TaskStatus, error: dict[str, str] | None) -> list[bytes]:
        self.finished = True
        result_url = self.result_url if status == TaskStatus.SUCCEEDED else None
        return [*self._status(status), sse("final", {"status": status, "result_url": result_url, "error": error})]

    def _counts(self) -> dict[str, int]:
        return {"done": max(self.sent, self.db_done), "total": self.total}
