"""Live events of one task (GET /v1/detect/{id}/events): announced by whoever moves the task, carried to the
API processes through Redis, without the database. An event is appended to the task's log in Redis (a list that
expires `event_log_ttl` after its last event, replayed to a stream that connects mid-run) and published on the
task's channel, in one round trip.

Events are hints: the task row stays the truth. A publish that fails is logged and dropped, and the process
then leaves Redis alone for PAUSE_AFTER_FAILURE seconds, so an outage costs a worker one timeout, not one per
frame. The API's sweep (api/services/event_hub.py) makes up for a final event that was lost.

Two kinds, as JSON objects: `{"kind": "status", "status", "error"}` on every change of status, and
`{"kind": "frame", "done", "total", "frame", "entry", "scores", "crop_keys"}` for each frame a worker finished.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
import structlog
from sqlalchemy.orm import Session

from facequeue.core.enums import TaskStatus
from facequeue.core.settings import Settings, get_settings
from facequeue.plumbing.after_commit import after_commit
from facequeue.plumbing.broker import redis_client

log = structlog.get_logger(__name__)

PAUSE_AFTER_FAILURE = 30.0  # seconds without publishing once Redis failed to take an event
_paused_until = 0.0


def event_log_ttl(settings: Settings) -> int:
    """Seconds a task's event log outlives its last event: longer than any run, so a stream that connects
    mid-run replays all of it (once the task is final, streams replay the stored result instead)."""
    return int(2 * max(settings.video_time_limit, settings.image_time_limit))


def channel(settings: Settings, task_id: str) -> str:
    return f"{settings.broker_key_prefix}facequeue:task-events:{task_id}"


def log_key(settings: Settings, task_id: str) -> str:
    return f"{channel(settings, task_id)}:log"


def decode(raw: bytes | str) -> dict[str, Any] | None:
    """An announced event; None for anything else (a message that is not ours)."""
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
    after_commit(session, _announce_statuses, (task_id, TaskStatus(status), error_code, error_msg))


def _announce_statuses(_committed: Session, statuses: list[tuple[str, TaskStatus, str | None, str | None]]) -> None:
    settings = get_settings()
    for task_id, status, error_code, error_msg in statuses:
        announce_status(task_id, status, settings, error_code, error_msg)


def _publish(task_id: str, payload: dict[str, Any], settings: Settings) -> None:
    global _paused_until
    if time.monotonic() < _paused_until:
        return
    data = json.dumps(payload, separators=(",", ":")).encode()
    try:
        pipe = redis_client(settings).pipeline(transaction=False)
        pipe.rpush(log_key(settings, task_id), data)
        pipe.expire(log_key(settings, task_id), event_log_ttl(settings))
        pipe.publish(channel(settings, task_id), data)
        pipe.execute()
    except redis.RedisError as error:  # never in the way of the task: the row holds the truth
        _paused_until = time.monotonic() + PAUSE_AFTER_FAILURE
        log.warning("task_event_dropped", task_id=task_id, kind=payload["kind"], error=type(error).__name__)


def forget(task_id: str, settings: Settings) -> None:
    """Delete a task's event log now (its frames are results: they go with the task)."""
    try:
        redis_client(settings).delete(log_key(settings, task_id))
    except redis.RedisError as error:  # Redis expires it anyway
        log.warning("task_event_log_kept", task_id=task_id, error=type(error).__name__)
