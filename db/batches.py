"""Batches and the fair dispatcher's view of held batch items."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from db.models import Batch, DetectTask, utcnow
from facequeue.core.enums import FINAL_STATUSES, Queue, TaskStatus


def insert_items(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """One executemany INSERT for a chunk of items: thousands per round trip, not one each."""
    if rows:
        session.execute(insert(DetectTask), list(rows))


def get_batch(session: Session, batch_id: str, tenant_id: str | None) -> Batch | None:
    batch = session.get(Batch, batch_id)
    return batch if batch is not None and batch.tenant_id == tenant_id else None


def status_counts(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(
        select(DetectTask.status, func.count()).where(DetectTask.batch_id == batch_id).group_by(DetectTask.status)
    ).all()
    counts = {status.value: 0 for status in TaskStatus}
    counts.update({status: count for status, count in rows})
    return counts


def processing_window(session: Session, batch_id: str):
    """(first start, last finish, finished count) of the batch's items, for the ETA."""
    return session.execute(
        select(
            func.min(DetectTask.started_at), func.max(DetectTask.finished_at), func.count(DetectTask.finished_at)
        ).where(DetectTask.batch_id == batch_id, DetectTask.status.in_([TaskStatus.SUCCEEDED, TaskStatus.FAILED]))
    ).one()


def first_failures(session: Session, batch_id: str, limit: int) -> Sequence[DetectTask]:
    return session.scalars(
        select(DetectTask)
        .where(DetectTask.batch_id == batch_id, DetectTask.status == TaskStatus.FAILED)
        .order_by(DetectTask.batch_position)
        .limit(limit)
    ).all()


def items_in_order(session: Session, batch_id: str, chunk: int = 500) -> Iterator[DetectTask]:
    """Every item in submit order, fetched in chunks so a 10,000-item batch never sits in memory."""
    position = -1
    while True:
        rows = session.scalars(
            select(DetectTask)
            .where(DetectTask.batch_id == batch_id, DetectTask.batch_position > position)
            .order_by(DetectTask.batch_position)
            .limit(chunk)
        ).all()
        if not rows:
            return
        yield from rows
        position = rows[-1].batch_position
        session.expunge_all()


def cancel_open_items(session: Session, batch_id: str) -> list[str]:
    """Cancel every item not yet final; returns their ids (each still needs its final-status hooks)."""
    ids = session.scalars(
        update(DetectTask)
        .where(DetectTask.batch_id == batch_id, DetectTask.status.in_([TaskStatus.QUEUED, TaskStatus.PROCESSING]))
        .values(status=TaskStatus.CANCELED, finished_at=utcnow())
        .returning(DetectTask.id)
    ).all()
    session.execute(update(Batch).where(Batch.id == batch_id, Batch.canceled_at.is_(None)).values(canceled_at=utcnow()))
    return list(ids)


def finish_if_complete(session: Session, batch_id: str) -> Batch | None:
    """Mark the batch finished when its last item became final; only the caller that does so gets the batch.

    The batch row is locked first: two items finishing at once each counted the other as open (neither had
    committed) and the batch stayed running. Locked, the second count runs after the first commit."""
    session.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update())
    open_items = session.scalar(
        select(func.count()).where(DetectTask.batch_id == batch_id, DetectTask.status.not_in(list(FINAL_STATUSES)))
    )
    if open_items:
        return None
    result = session.execute(
        update(Batch).where(Batch.id == batch_id, Batch.finished_at.is_(None)).values(finished_at=utcnow())
    )
    return session.get(Batch, batch_id, populate_existing=True) if result.rowcount == 1 else None


# --- fair dispatch -----------------------------------------------------------------------------

# held: stored but not yet handed to the broker (the dispatcher's to publish; db/backlog.py counts them)
HELD = and_(DetectTask.queue == Queue.BATCH, DetectTask.status == TaskStatus.QUEUED, DetectTask.published_at.is_(None))
_IN_FLIGHT = and_(
    DetectTask.queue == Queue.BATCH,
    or_(
        DetectTask.status == TaskStatus.PROCESSING,
        and_(DetectTask.status == TaskStatus.QUEUED, DetectTask.published_at.is_not(None)),
    ),
)


def _tenant_is(tenant_id: str | None):
    return func.coalesce(DetectTask.tenant_id, "") == (tenant_id or "")


def tenants_with_held_items(session: Session) -> list[str | None]:
    """Tenants with unpublished batch items, longest-waiting first."""
    rows = session.execute(
        select(DetectTask.tenant_id, func.min(DetectTask.created_at).label("oldest"))
        .where(HELD)
        .group_by(DetectTask.tenant_id)
        .order_by("oldest")
    ).all()
    return [tenant_id for tenant_id, _ in rows]


def in_flight_count(session: Session, tenant_id: str | None) -> int:
    return session.scalar(select(func.count()).where(_IN_FLIGHT, _tenant_is(tenant_id)))


def next_held_items(session: Session, tenant_id: str | None, limit: int) -> Sequence[tuple[str, str | None]]:
    """(id, kind) of the tenant's next held items; locked rows are skipped so dispatchers don't collide."""
    return session.execute(
        select(DetectTask.id, DetectTask.kind)
        .where(HELD, _tenant_is(tenant_id))
        .order_by(DetectTask.created_at, DetectTask.batch_position)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
