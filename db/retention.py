"""Retention: which final tasks and batches are past the time they are kept, and removing their rows.

A tenant's `retention_seconds` wins over the default (FACEQUEUE_RETENTION). Tenants are grouped by the
retention in force, so each scan is one indexed query per distinct retention (a handful), however many
tenants there are. Rows that another purge holds are skipped (Postgres), so API processes purging at
once share the work instead of repeating it.

A final task's credits are closed (settled or refunded) in the transaction that made it final, and the
balances live on `tenants`: removing tasks changes no balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.models import Batch, DetectTask, Tenant, WebhookDelivery, WebhookEvent
from facequeue.core.enums import FINAL_STATUSES

_FINAL = DetectTask.status.in_(list(FINAL_STATUSES))


def _retention_groups(
    session: Session, tenant_id: InstrumentedAttribute, default_seconds: int
) -> list[tuple[ColumnElement[bool], int]]:
    """(which rows, seconds they are kept) for each retention in force."""
    own = session.scalars(
        select(Tenant.retention_seconds).where(Tenant.retention_seconds.is_not(None)).distinct()
    ).all()
    groups = [
        (tenant_id.is_(None), default_seconds),
        (tenant_id.in_(select(Tenant.id).where(Tenant.retention_seconds.is_(None))), default_seconds),
    ]
    for seconds in own:
        groups.append((tenant_id.in_(select(Tenant.id).where(Tenant.retention_seconds == seconds)), seconds))
    return groups


def expired_tasks(session: Session, now: datetime, default_seconds: int, limit: int) -> list[str]:
    """Ids of up to `limit` final tasks that finished longer ago than they are kept, locked until the caller
    commits. Live tasks are never among them."""
    return _expired_ids(session, DetectTask, _FINAL, now, default_seconds, limit)


def delete_tasks(session: Session, task_ids: Sequence[str]) -> int:
    """Delete final tasks with their webhook events and delivery attempts; returns how many tasks went."""
    _delete_webhook_log(session, task_ids)
    return session.execute(
        delete(DetectTask).where(DetectTask.id.in_(task_ids), _FINAL).execution_options(synchronize_session=False)
    ).rowcount


def emptied_batches(session: Session, now: datetime, default_seconds: int, limit: int) -> list[str]:
    """Ids of up to `limit` batches that finished longer ago than they are kept and have no item left (items
    finish before their batch and share its tenant, so they go first), locked until the caller commits."""
    no_items = ~exists().where(DetectTask.batch_id == Batch.id)
    return _expired_ids(session, Batch, no_items, now, default_seconds, limit)


def _expired_ids(
    session: Session,
    model: type[DetectTask] | type[Batch],
    condition: ColumnElement[bool],
    now: datetime,
    default_seconds: int,
    limit: int,
) -> list[str]:
    """Up to `limit` ids of `model` rows meeting `condition` that finished longer ago than their tenant keeps
    them, locked (skipping rows another API process holds) until the caller commits."""
    found: list[str] = []
    for rows, seconds in _retention_groups(session, model.tenant_id, default_seconds):
        if len(found) == limit:
            break
        found += session.scalars(
            select(model.id)
            .where(rows, model.finished_at < now - timedelta(seconds=seconds), condition)
            .limit(limit - len(found))
            .with_for_update(skip_locked=True, of=model)
        ).all()
    return found


def delete_batches(session: Session, batch_ids: Sequence[str]) -> int:
    """Delete batches with their webhook events and delivery attempts (their subject id is the batch id)."""
    _delete_webhook_log(session, batch_ids)
    return session.execute(
        delete(Batch).where(Batch.id.in_(batch_ids)).execution_options(synchronize_session=False)
    ).rowcount


def _delete_webhook_log(session: Session, subject_ids: Sequence[str]) -> None:
    for table in (WebhookDelivery, WebhookEvent):
        session.execute(
            delete(table).where(table.task_id.in_(subject_ids)).execution_options(synchronize_session=False)
        )


def tasks_with_kept_upload(session: Session, limit: int) -> Sequence[tuple[str, str]]:
    """(id, upload key) of final tasks whose upload is still stored: the process that made them final died
    before deleting it."""
    return session.execute(
        select(DetectTask.id, DetectTask.upload_key).where(DetectTask.upload_key.is_not(None), _FINAL).limit(limit)
    ).all()


def forget_uploads(session: Session, task_ids: Sequence[str]) -> None:
    """Their uploads are deleted."""
    session.execute(
        update(DetectTask)
        .where(DetectTask.id.in_(task_ids), _FINAL)
        .values(upload_key=None)
        .execution_options(synchronize_session=False)
    )


def set_tenant_retention(session: Session, tenant_id: str, seconds: int | None) -> None:
    """Keep the tenant's final tasks `seconds` (None: the default)."""
    session.execute(update(Tenant).where(Tenant.id == tenant_id).values(retention_seconds=seconds))
