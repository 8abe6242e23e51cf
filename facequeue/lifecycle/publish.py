"""Publishing a committed task's detect message, and recording that it was (or was not) published.

A task row is committed before its message is sent, so a worker never receives a task it cannot
read. A publish that fails, or a message the broker loses, leaves a queued row behind: the
`published_at` mark tells the reaper which rows need their message sent again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import tasks
from db.models import DetectTask
from facequeue.core.enums import Queue
from facequeue.core.settings import Settings
from facequeue.plumbing.broker import log_failed_publish, media_to_fetch, publish_detect

# Publishing follows the commit at once; the reaper gives it this long before stepping in (tasks and webhooks).
UNPUBLISHED_GRACE_SECONDS = 30.0


def publish_submitted(session: Session, task: DetectTask, settings: Settings) -> None:
    """Publish a task just committed as published; a failed publish unmarks it for the reaper."""
    try:
        publish_detect(task.id, task.queue, task.kind, settings, fetch_first=_fetch_first(task))
    except Exception as error:  # the row is committed: unmarked, the reaper publishes it soon, nothing is lost
        log_failed_publish("publish_failed", error, task_id=task.id)
        tasks.mark_unpublished(session, task.id)
        session.commit()


def publish_again(session: Session, task_id: str, queue: str, kind: str | None, settings: Settings) -> None:
    """The reaper's publish of a queued task whose message was never sent or may be lost. The caller commits."""
    publish_detect(task_id, queue, kind, settings, fetch_first=_fetch_first(session.get(DetectTask, task_id)))
    tasks.mark_published(session, task_id)


def publish_held(session: Session, task_id: str, kind: str | None, settings: Settings) -> None:
    """The dispatcher's publish of a held batch item: marked first, so it counts as in flight. The caller commits."""
    tasks.mark_published(session, task_id)
    publish_detect(task_id, Queue.BATCH, kind, settings, fetch_first=_fetch_first(session.get(DetectTask, task_id)))


def _fetch_first(task: DetectTask | None) -> bool:
    """A task with URLs goes to the fetch stage's I/O pool first (workers/fetch_stage.py); the reaper's rows are
    in the session already, so looking one up costs no query."""
    return task is not None and media_to_fetch(task.source_url, task.params, task.upload_key)
