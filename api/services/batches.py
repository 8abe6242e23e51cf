"""Batches: thousands of detect tasks stored in one transaction, then handed out by the fair dispatcher."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy.orm import Session

from api.errors import InsufficientCredits, InvalidInput, NotFound, ServiceError
from api.schemas import BatchFailure, BatchView
from api.services.collections import check_collections
from api.services.gates import check_features, check_not_in_maintenance
from api.services.submission import DetectSubmission, checked_input, validate_webhook_url
from db import batch_persons, batches
from db.batch_persons import Appearance
from db.models import Batch, DetectTask, new_task_id, utcnow
from facequeue.core.enums import CreditState, Queue, SubmitApi, TaskStatus
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, upload_key
from facequeue.lifecycle import billing
from facequeue.lifecycle.dispatch import dispatch
from facequeue.lifecycle.finalize import on_task_final
from facequeue.plumbing import metrics
from facequeue.plumbing.sessions import get_sessionmaker

BATCH_INSERT_CHUNK = 1000
FAILURES_SHOWN = 10


class PersonsNotRequested(ServiceError):
    status_code = 409
    code = "persons_not_requested"


class BatchService:
    def __init__(self, session: Session, settings: Settings, storage: MediaStorage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage
        self._collections_found: set[str] = set()

    def submit(
        self, tenant_id: str | None, items: Iterable[DetectSubmission], callback_url: str | None, persons: bool
    ) -> Batch:
        """Store every item as a held task (bulk inserts, one transaction, one credit reservation), then
        hand the tenant's first items to the fair dispatcher. A bad item refuses the whole batch."""
        check_not_in_maintenance(self.session, self.settings)  # once per batch, not once per item
        if callback_url is not None:
            validate_webhook_url(callback_url, self.settings, field="callback_url")
        batch = Batch(tenant_id=tenant_id, total=0, callback_url=callback_url, persons=persons)
        self.session.add(batch)
        self.session.flush()
        rows, uploads, total_cost, kinds = [], [], 0, collections.Counter()
        try:
            for position, submission in enumerate(items):
                row = self._item_row(batch, position, submission)
                if row["upload_key"]:
                    uploads.append(row["upload_key"])
                total_cost += row["cost"]
                kinds[row["kind"]] += 1
                rows.append(row)
                if len(rows) == BATCH_INSERT_CHUNK:
                    batches.insert_items(self.session, rows)
                    rows = []
                batch.total = position + 1
            batches.insert_items(self.session, rows)
            if batch.total == 0:
                raise InvalidInput("items must not be empty", field="items")
            if tenant_id is not None and not billing.reserve(self.session, tenant_id, total_cost):
                raise InsufficientCredits(f"Insufficient Credits: this batch needs {total_cost}")
            self.session.commit()
        except BaseException:
            self.session.rollback()
            for key in uploads:
                self.storage.delete_prefix(key)
            raise
        for kind, count in kinds.items():
            metrics.count_submitted(kind, SubmitApi.BATCH, tenant_id, self.settings, count)
        dispatch(self.session, self.settings, [tenant_id])
        self.session.commit()
        return batch

    def _item_row(self, batch: Batch, position: int, submission: DetectSubmission) -> dict[str, Any]:
        try:
            check_features(submission.params, self.settings)
            check_collections(self.session, batch.tenant_id, submission.params, self._collections_found)
            checked = checked_input(submission, self.settings)
        except (InvalidInput, NotFound) as error:
            field = f"items[{position}].{error.field}" if error.field else f"items[{position}]"
            raise type(error)(f"items[{position}]: {error.message}", field=field) from error
        task_id, kind = new_task_id(), billing.kind_hint(checked.params, checked.url)
        key = upload_key(task_id) if checked.image_bytes is not None else None
        if key is not None:
            self.storage.put_bytes(key, checked.image_bytes)
        reserved = batch.tenant_id is not None
        return {
            "id": task_id,
            "tenant_id": batch.tenant_id,
            "kind": kind,
            "source_url": checked.url,
            "upload_key": key,
            "params": checked.params.model_dump(),
            "queue": Queue.BATCH,
            "api": SubmitApi.BATCH,
            "status": TaskStatus.QUEUED,
            "progress_done": 0,
            "progress_total": 0,
            "timings": {},
            "attempts": 0,
            "created_at": batch.created_at,
            "batch_id": batch.id,
            "batch_position": position,
            "item_name": submission.item_name,
            "cost": billing.estimated_cost(checked.params, kind, self.settings) if reserved else 0,
            "credit_state": CreditState.RESERVED if reserved else CreditState.NONE,
        }

    def get(self, batch_id: str, tenant_id: str | None) -> BatchView:
        return self._view(self._owned(batch_id, tenant_id))

    def cancel(self, batch_id: str, tenant_id: str | None) -> BatchView:
        """Cancel every item not yet final (running ones stop at their next frame); finished ones keep results."""
        batch = self._owned(batch_id, tenant_id)
        for task_id in batches.cancel_open_items(self.session, batch.id):
            on_task_final(self.session, task_id)
        self.session.commit()
        self.session.refresh(batch)
        return self._view(batch)

    def items(self, batch_id: str, tenant_id: str | None) -> Iterator[DetectTask]:
        """Every item in submit order, read lazily: ownership is checked now, the rows while they are sent."""
        self._owned(batch_id, tenant_id)
        return _items_in_order(batch_id)

    def persons(self, batch_id: str, tenant_id: str | None) -> Iterator[tuple[str, list[Appearance]]]:
        """The batch's persons, read lazily like its items."""
        if not self._owned(batch_id, tenant_id).persons:
            raise PersonsNotRequested(
                f"batch {batch_id} was not submitted with persons: true, so it has no batch-wide persons",
                field="batch_id",
            )
        return _persons_in_order(batch_id)

    def _owned(self, batch_id: str, tenant_id: str | None) -> Batch:
        batch = batches.get_batch(self.session, batch_id, tenant_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found", field="batch_id")
        return batch

    def _view(self, batch: Batch) -> BatchView:
        counts = batches.status_counts(self.session, batch.id)
        final = counts["succeeded"] + counts["failed"] + counts["canceled"]
        state = "canceled" if batch.canceled_at else ("completed" if batch.finished_at else "running")
        failures = [
            BatchFailure(
                position=task.batch_position,
                name=task.item_name,
                detect_task_id=task.id,
                error={"code": task.error_code or "", "message": task.error_msg or ""},
            )
            for task in batches.first_failures(self.session, batch.id, FAILURES_SHOWN)
        ]
        return BatchView(
            batch_id=batch.id,
            status=state,
            persons=batch.persons,
            total=batch.total,
            counts=counts,
            progress=round(final / batch.total, 4) if batch.total else 1.0,
            eta_seconds=self._eta_seconds(batch, final),
            created_at=batch.created_at,
            finished_at=batch.finished_at,
            failures=failures,
        )

    def _eta_seconds(self, batch: Batch, final: int) -> float | None:
        """The open items at the rate items have finished since the first one started; None before any has."""
        first_start, _, processed = batches.processing_window(self.session, batch.id)
        if not processed or final >= batch.total or first_start is None:
            return None
        rate = processed / max((utcnow() - first_start).total_seconds(), 1e-3)
        return round((batch.total - final) / rate, 1)


def _items_in_order(batch_id: str) -> Iterator[DetectTask]:
    session = get_sessionmaker()()  # the request's session is closed before a streamed body is sent
    try:
        yield from batches.items_in_order(session, batch_id)
    finally:
        session.close()


def _persons_in_order(batch_id: str) -> Iterator[tuple[str, list[Appearance]]]:
    session = get_sessionmaker()()
    try:
        yield from batch_persons.appearances(session, batch_id)
    finally:
        session.close()
