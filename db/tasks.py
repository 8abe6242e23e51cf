"""Detect tasks: every read and write of detect_tasks.

State changes are single conditional UPDATEs, so the API, many workers and the reaper can
race on one row and exactly one of them wins. A worker run is fenced by `attempts`: a run
that lost its claim (reaped and re-queued) can no longer write.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.face_models import BatchItemPerson, TaskFaceEmbedding
from db.models import Batch, DetectTask, utcnow
from facequeue.core.enums import FINAL_STATUSES, Queue, TaskStatus


def get_task(session: Session, task_id: str, tenant_id: str | None = None) -> DetectTask | None:
    task = session.get(DetectTask, task_id)
    if task is None or task.tenant_id != tenant_id:
        return None
    return task


def final_among(session: Session, task_ids: Sequence[str]) -> set[str]:
    """Which of `task_ids` are final: one query for every synchronous call waiting in an API process."""
    final = select(DetectTask.id).where(DetectTask.id.in_(task_ids), DetectTask.status.in_(FINAL_STATUSES))
    return set(session.scalars(final))


def find_by_idempotency_key(session: Session, tenant_id: str | None, key: str) -> DetectTask | None:
    return session.scalar(
        select(DetectTask).where(
            func.coalesce(DetectTask.tenant_id, "") == (tenant_id or ""), DetectTask.idempotency_key == key
        )
    )


class TaskPosition(NamedTuple):
    created_at: datetime
    task_id: str


def list_tasks(
    session: Session, tenant_id: str | None, status: str | None, after: TaskPosition | None, limit: int
) -> tuple[Sequence[DetectTask], TaskPosition | None]:
    """Newest first; a page starts after the last row's (created_at, id), and the position for the next page is
    returned when there is one."""
    query = select(DetectTask).where(func.coalesce(DetectTask.tenant_id, "") == (tenant_id or ""))
    if status:
        query = query.where(DetectTask.status == status)
    if after is not None:
        created, task_id = after
        query = query.where(
            or_(DetectTask.created_at < created, and_(DetectTask.created_at == created, DetectTask.id < task_id))
        )
    rows = session.scalars(query.order_by(DetectTask.created_at.desc(), DetectTask.id.desc()).limit(limit + 1)).all()
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], TaskPosition(last.created_at, last.id) if last is not None else None


def mark_published(session: Session, task_id: str) -> None:
    session.execute(update(DetectTask).where(DetectTask.id == task_id).values(published_at=utcnow()))


def mark_unpublished(session: Session, task_id: str) -> None:
    """A publish failed after the commit that marked it: the reaper's next pass publishes the task."""
    session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.status == TaskStatus.QUEUED)
        .values(published_at=None)
    )


def cancel_task(session: Session, task_id: str) -> bool:
    """Cancel a queued or processing task; the worker notices at its next heartbeat."""
    now = utcnow()
    result = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.status.in_([TaskStatus.QUEUED, TaskStatus.PROCESSING]))
        .values(status=TaskStatus.CANCELED, finished_at=now, error_code=None, error_msg=None)
    )
    return result.rowcount == 1


def purge_result(session: Session, task_id: str) -> None:
    """The result goes, and the face embeddings kept with it (its faces' and its persons' in a batch)."""
    purged = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.status.in_(list(FINAL_STATUSES)))
        .values(result=None, purged_at=utcnow())
    )
    if purged.rowcount:
        session.execute(delete(TaskFaceEmbedding).where(TaskFaceEmbedding.task_id == task_id))
        session.execute(delete(BatchItemPerson).where(BatchItemPerson.task_id == task_id))


class ClaimedRun(NamedTuple):
    attempt: int
    params: dict[str, Any]
    source_url: str | None
    upload_key: str | None
    tenant_id: str | None
    timings: dict[str, float]  # what an earlier stage of this attempt took (the fetch stage's download)
    kind: str | None  # image | video: a hint from the URL until a stage looked at the bytes
    persons_batch_id: str | None  # its batch, when that was submitted with persons: true


def claim_task(session: Session, task_id: str, worker_name: str, worker_pid: int) -> ClaimedRun | None:
    """queued -> processing for exactly one worker run (committed), recorded as the named worker's pool
    process `worker_pid`; None when someone else has it or it is final. One round trip: the UPDATE returns
    what the run needs."""
    now = utcnow()
    claimed = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.status == TaskStatus.QUEUED)
        .values(
            status=TaskStatus.PROCESSING,
            attempts=DetectTask.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            progress_done=0,
            worker_name=worker_name,
            worker_pid=worker_pid,
        )
        .returning(
            DetectTask.attempts,
            DetectTask.params,
            DetectTask.source_url,
            DetectTask.upload_key,
            DetectTask.tenant_id,
            DetectTask.timings,
            DetectTask.kind,
            select(Batch.id)
            .where(Batch.id == DetectTask.batch_id, Batch.persons)
            .scalar_subquery()
            .label("persons_batch_id"),
        )
    ).first()
    if claimed is None:
        return None
    session.commit()
    return ClaimedRun(
        claimed.attempts,
        dict(claimed.params),
        claimed.source_url,
        claimed.upload_key,
        claimed.tenant_id,
        dict(claimed.timings or {}),
        claimed.kind,
        claimed.persons_batch_id,
    )


def hand_over(session: Session, task_id: str, attempt: int, **values: Any) -> tuple[str, str | None] | None:
    """processing -> queued for the other stage of the same run: the fetch stage hands downloaded media to a CPU
    slot, or a CPU slot hands media not downloaded yet to the fetch stage (workers/fetch_stage.py). The attempt
    the claim counted is given back, so the next stage's claim counts that attempt again, and the row is marked
    published (the caller publishes next). Fenced like every run write; returns the task's queue and kind, None
    when the run no longer owns it. Tried again after a commit whose reply was lost, it finds its own hand-over
    (queued with the attempt given back; the reaper's re-queue keeps the attempt). The caller commits."""
    handed = session.execute(
        update(DetectTask)
        .where(_owned(task_id, attempt))
        .values(
            status=TaskStatus.QUEUED,
            attempts=DetectTask.attempts - 1,
            heartbeat_at=None,
            published_at=utcnow(),
            **values,
        )
        .returning(DetectTask.queue, DetectTask.kind)
    ).first()
    if handed is None:
        handed = session.execute(
            select(DetectTask.queue, DetectTask.kind).where(
                DetectTask.id == task_id, DetectTask.status == TaskStatus.QUEUED, DetectTask.attempts == attempt - 1
            )
        ).first()
    return None if handed is None else (handed.queue, handed.kind)


def _owned(task_id: str, attempt: int):
    return and_(DetectTask.id == task_id, DetectTask.status == TaskStatus.PROCESSING, DetectTask.attempts == attempt)


def heartbeat(session: Session, task_id: str, attempt: int, **values: Any) -> bool:
    """Refresh the heartbeat (and any progress/metadata); False once the run no longer owns the task."""
    result = session.execute(update(DetectTask).where(_owned(task_id, attempt)).values(heartbeat_at=utcnow(), **values))
    return result.rowcount == 1


def finish_task(session: Session, task_id: str, attempt: int, status: TaskStatus, **values: Any) -> bool:
    """Write a final status once; a second or stale run changes nothing."""
    result = session.execute(
        update(DetectTask).where(_owned(task_id, attempt)).values(status=status, finished_at=utcnow(), **values)
    )
    return result.rowcount == 1


def stale_processing_tasks(session: Session, stale_after: float, limit: int = 500) -> Sequence[DetectTask]:
    cutoff = utcnow() - timedelta(seconds=stale_after)
    return session.scalars(
        select(DetectTask)
        .where(DetectTask.status == TaskStatus.PROCESSING, DetectTask.heartbeat_at < cutoff)
        .limit(limit)
    ).all()


def tasks_claimed_by(session: Session, worker_name: str, worker_pid: int | None = None) -> Sequence[DetectTask]:
    """Processing rows the named worker claimed (only its pool process `worker_pid`, if given)."""
    query = select(DetectTask).where(DetectTask.status == TaskStatus.PROCESSING, DetectTask.worker_name == worker_name)
    if worker_pid is not None:
        query = query.where(DetectTask.worker_pid == worker_pid)
    return session.scalars(query).all()


def requeue_lost_run(session: Session, task: DetectTask) -> bool:
    """processing (run lost) -> queued, only if nobody touched the row since it was read."""
    result = session.execute(
        update(DetectTask)
        .where(_owned(task.id, task.attempts), DetectTask.heartbeat_at == task.heartbeat_at)
        .values(status=TaskStatus.QUEUED, published_at=None, heartbeat_at=None)
    )
    return result.rowcount == 1


def fail_lost_run(session: Session, task: DetectTask, error_code: str, error_msg: str) -> bool:
    result = session.execute(
        update(DetectTask)
        .where(_owned(task.id, task.attempts), DetectTask.heartbeat_at == task.heartbeat_at)
        .values(status=TaskStatus.FAILED, finished_at=utcnow(), error_code=error_code, error_msg=error_msg)
    )
    return result.rowcount == 1


def queued_tasks_to_republish(
    session: Session, grace: float, empty_queues: Collection[str], limit: int = 1000
) -> Sequence[DetectTask]:
    """Queued rows whose message is missing: never published (the publish after the commit failed), or
    published over `grace` seconds ago while the broker queue that would hold the message is empty (one of
    `empty_queues`). A task waiting behind others is never returned, however long it waits: its queue is
    not empty. A task without an upload has URLs: its message waits in Queue.FETCH until the fetch stage
    stores them as its upload."""
    cutoff = utcnow() - timedelta(seconds=grace)
    missing = [
        and_(
            DetectTask.published_at.is_(None),
            DetectTask.queue != Queue.BATCH,  # held batch items wait for the fair dispatcher, not the reaper
            DetectTask.created_at < cutoff,
        )
    ]
    task_queues = [queue for queue in empty_queues if queue != Queue.FETCH]
    if task_queues:
        missing.append(
            and_(
                DetectTask.published_at < cutoff,
                DetectTask.upload_key.is_not(None),
                DetectTask.queue.in_(task_queues),
            )
        )
    if Queue.FETCH in empty_queues:
        missing.append(and_(DetectTask.published_at < cutoff, DetectTask.upload_key.is_(None)))
    return session.scalars(
        select(DetectTask)
        .where(DetectTask.status == TaskStatus.QUEUED, or_(*missing))
        .order_by(DetectTask.created_at)
        .limit(limit)
    ).all()


def queued_tasks_published_before(session: Session, moment: datetime, limit: int = 1000) -> Sequence[DetectTask]:
    """Queued rows whose message went out before `moment` (for a broker that lost every message)."""
    return session.scalars(
        select(DetectTask)
        .where(DetectTask.status == TaskStatus.QUEUED, DetectTask.published_at < moment)
        .order_by(DetectTask.created_at)
        .limit(limit)
    ).all()


def expired_previews(session: Session, now: datetime, limit: int = 500) -> Sequence[str]:
    """Tasks whose preview frames were kept until before `now` (FACEQUEUE_PREVIEW_TTL)."""
    return session.scalars(
        select(DetectTask.id).where(DetectTask.previews_until < now).order_by(DetectTask.previews_until).limit(limit)
    ).all()


def forget_previews(session: Session, task_ids: Sequence[str]) -> None:
    """Their preview frames are deleted: previews of these tasks now answer 404."""
    session.execute(update(DetectTask).where(DetectTask.id.in_(task_ids)).values(previews_until=None))
