"""The backlog as the database sees it: tasks waiting or running per queue, and webhook events not yet settled.

Read on every metrics scrape (cached briefly by the caller), so each is one grouped query over the
rows that are still open, served by the (status, created_at) and (state, next_attempt_at) indexes, and
bounded like every statement (FACEQUEUE_DATABASE_TIMEOUT).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.batches import HELD
from db.face_models import FaceCollection
from db.models import DetectTask, WebhookEvent
from facequeue.core.enums import EventState, TaskStatus

BACKLOG_STATES = ("queued", "held", "processing")  # held: a batch item the dispatcher has not published yet


class QueueBacklog(NamedTuple):
    queue: str
    state: str
    tasks: int
    oldest_created_at: datetime | None


_STATE = case((DetectTask.status == TaskStatus.PROCESSING, "processing"), (HELD, "held"), else_="queued")


def task_backlog(session: Session) -> list[QueueBacklog]:
    """Open tasks per (queue, state), with the oldest one's submit time."""
    state = _STATE.label("state")
    rows = session.execute(
        select(DetectTask.queue, state, func.count(), func.min(DetectTask.created_at))
        .where(DetectTask.status.in_([TaskStatus.QUEUED, TaskStatus.PROCESSING]))
        .group_by(DetectTask.queue, state)
    ).all()
    return [QueueBacklog(*row) for row in rows]


def pending_webhook_events(session: Session) -> int:
    return session.scalar(select(func.count()).where(WebhookEvent.state == EventState.PENDING))


def indexed_faces(session: Session) -> int:
    """Faces in every collection (their kept counts: no scan of the faces)."""
    return session.scalar(select(func.coalesce(func.sum(FaceCollection.face_count), 0)))
