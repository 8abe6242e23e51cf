"""Live events of one task (GET /v1/detect/{id}/events): announced by whoever moves the task, carried to the
API processes without the database.

- distributed (Redis broker): an event is appended to the task's log in Redis (a list that expires
  `event_log_ttl` after its last event, replayed to a stream that connects mid-run) and published on the
  task's channel, in one round trip;
- embedded (filesystem broker, one host): an event is a line appended to the task's log file under
  `data_dir/events`; the API watches that folder (inotify through watchfiles), so nothing polls. The file is
  made when the task is submitted, and announcing only ever appends to it: once a deleted task's log is gone,
  a worker still running it writes nowhere (its frames' faces are the deleted results).

Events are hints: the task row stays the truth. A publish that fails is logged and dropped, and the process
then leaves Redis alone for PAUSE_AFTER_FAILURE seconds, so an outage costs a worker one timeout, not one per
frame. The API's sweep (api/services/event_hub.py) makes up for a final event that was lost.

Two kinds, as JSON objects: `{"kind": "status", "status", "error"}` on every change of status, and
`{"kind": "frame", "done", "total", "frame", "entry", "scores", "crop_keys"}` for each frame a worker finished.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import redis
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

from db import tasks
from facequeue.enums import TaskStatus
from facequeue.lifecycle.broker import redis_client
from facequeue.settings import Settings, get_settings
from facequeue.storage import PRIVATE_FILE_MODE

log = structlog.get_logger(__name__)

PAUSE_AFTER_FAILURE = 30.0  # seconds without publishing once Redis failed to take an event
PRUNE_BATCH = 500  # log files whose tasks are looked up in one query
_PENDING = "facequeue.task_events"  # key in Session.info: events to announce once the session commits
_paused_until = 0.0


def event_log_ttl(settings: Settings) -> int:
    """Seconds a task's event log outlives its last event: longer than any run, so a stream that connects
    mid-run replays all of it (once the task is final, streams replay the stored result instead)."""
    return int(2 * max(settings.video_time_limit, settings.image_time_limit))


def channel(settings: Settings, task_id: str) -> str:
    return f"{settings.broker_key_prefix}facequeue:task-events:{task_id}"


def log_key(settings: Settings, task_id: str) -> str:
    return f"{channel(settings, task_id)}:log"


def events_folder(settings: Settings) -> Path:
    return (settings.data_dir / "events").resolve()


def log_file(settings: Settings, task_id: str) -> Path:
    return events_folder(settings) / f"{task_id}.jsonl"


def decode(raw: bytes | str) -> dict[str, Any] | None:
    """An announced event; None for anything else (a line cut short, a file or message that is not ours)."""
    try:
        event = json.loads(raw)
    except ValueError:  # JSON and Unicode errors alike
        return None
    return event if isinstance(event, dict) and event.get("kind") in ("status", "frame") else None


# --- announcing -------------------------------------------------------------------------------


def announce_status(
    task_id: str, status: TaskStatus, settings: Settings, error_code: str | None = None, error_msg: str | None = None
) -> None:
    error = {"code": error_code, "message": error_msg} if error_code else None
    _publish(task_id, {"kind": "status", "status": str(status), "error": error}, settings)


def announce_frame(
    task_id: str,
    done: int,
    total: int,
    frame: str,
    entry: dict[str, Any],
    scores: list[float],
    crop_keys: list[str] | None,
    settings: Settings,
) -> None:
    """Frame `frame` is the `done`-th of `total` this run finished; `entry` is its faces_obj entry."""
    _publish(
        task_id,
        {
            "kind": "frame",
            "done": done,
            "total": total,
            "frame": frame,
            "entry": entry,
            "scores": scores,
            "crop_keys": crop_keys,
        },
        settings,
    )


def announce_after_commit(
    session: Session, task_id: str, status: str, error_code: str | None, error_msg: str | None
) -> None:
    """Announce a status written in `session`'s transaction once it commits (nothing on rollback)."""
    session.info.setdefault(_PENDING, []).append((task_id, TaskStatus(status), error_code, error_msg))
    if not event.contains(session, "after_commit", _announce_pending):
        event.listen(session, "after_commit", _announce_pending)
        event.listen(session, "after_rollback", _drop_pending)


def _announce_pending(session: Session) -> None:
    settings = get_settings()
    for task_id, status, error_code, error_msg in session.info.pop(_PENDING, ()):
        announce_status(task_id, status, settings, error_code, error_msg)


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def open_log(task_id: str, settings: Settings) -> None:
    """Embedded: the task's empty log file, made as the task is submitted (announcing only appends to it)."""
    if settings.is_embedded:
        path = log_file(settings, task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))


def _publish(task_id: str, payload: dict[str, Any], settings: Settings) -> None:
    global _paused_until
    data = json.dumps(payload, separators=(",", ":")).encode()
    try:
        if settings.is_embedded:
            _append_line(log_file(settings, task_id), data + b"\n")
        elif time.monotonic() >= _paused_until:
            pipe = redis_client(settings).pipeline(transaction=False)
            pipe.rpush(log_key(settings, task_id), data)
            pipe.expire(log_key(settings, task_id), event_log_ttl(settings))
            pipe.publish(channel(settings, task_id), data)
            pipe.execute()
    except redis.RedisError as error:  # never in the way of the task: the row holds the truth
        _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning("task_event_dropped", task_id=task_id, kind=payload["kind"], error=type(error).__name__)
    except FileNotFoundError:
        pass  # the task was deleted (its log with it), or submitted before logs were made at submit
    except OSError as error:  # a full or read-only data directory
        log.warning("task_event_dropped", task_id=task_id, kind=payload["kind"], error=type(error).__name__)


def _append_line(path: Path, line: bytes) -> None:
    # O_APPEND and one write: lines from a worker and from the API (a cancel) never interleave. No O_CREAT: a
    # deleted task's log stays deleted.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# --- reading back and cleaning up -------------------------------------------------------------


class LogPosition(NamedTuple):
    """Where the next read of a log file starts: the file (its inode) and a line boundary in it."""

    inode: int
    offset: int


START = LogPosition(inode=-1, offset=0)  # before any file: whatever file is there is read from its start


def read_log_file(
    path: Path, start: LogPosition = START, end: int | None = None
) -> tuple[list[dict[str, Any]], LogPosition]:
    """The events of an embedded log file's complete lines from `start` (to byte `end`), and where the next
    read starts (a line still being written is left for it). A file that is not the one `start` was in, or
    is shorter (replaced, cut short), is read from its start; a line that is no event is skipped."""
    try:
        with path.open("rb") as file:
            stat = os.fstat(file.fileno())
            offset = start.offset if stat.st_ino == start.inode and stat.st_size >= start.offset else 0
            file.seek(offset)
            data = file.read() if end is None else file.read(max(0, end - offset))
    except FileNotFoundError:
        return [], start
    complete = data[: data.rfind(b"\n") + 1]
    events = [decode(line) for line in complete.splitlines() if line]
    if None in events:
        log.warning("task_event_lines_skipped", task_id=path.stem, count=events.count(None))
    return [event for event in events if event is not None], LogPosition(stat.st_ino, offset + len(complete))


def forget(task_id: str, settings: Settings) -> None:
    """Delete a task's event log now (its frames are results: they go with the task)."""
    try:
        if settings.is_embedded:
            log_file(settings, task_id).unlink(missing_ok=True)
        else:
            redis_client(settings).delete(log_key(settings, task_id))
    except (OSError, redis.RedisError) as error:  # Redis expires it anyway; the reaper prunes the file
        log.warning("task_event_log_kept", task_id=task_id, error=type(error).__name__)


def prune_event_logs(session: Session, settings: Settings) -> int:
    """Embedded: delete log files untouched for `event_log_ttl`, but not those of tasks still queued or running
    (made at submit, a log may wait long in a backlog). Redis expires its logs by itself."""
    if not settings.is_embedded or not events_folder(settings).is_dir():
        return 0
    untouched = dict(_untouched_logs(settings))
    task_ids = list(untouched)
    pruned = 0
    for first in range(0, len(task_ids), PRUNE_BATCH):
        batch = task_ids[first : first + PRUNE_BATCH]
        live = tasks.unfinished_among(session, batch)
        for task_id in batch:
            if task_id not in live:
                untouched[task_id].unlink(missing_ok=True)
                pruned += 1
    return pruned


def _untouched_logs(settings: Settings) -> Iterator[tuple[str, Path]]:
    cutoff = time.time() - event_log_ttl(settings)
    with os.scandir(events_folder(settings)) as entries:
        for entry in entries:
            try:
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    yield Path(entry.name).stem, Path(entry.path)
            except FileNotFoundError:
                continue
