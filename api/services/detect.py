"""The one detect task service: every router (native and compat) submits, reads and cancels through it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import IdempotencyConflict, InsufficientCredits, NotFound, ServiceError, SyncTimeout
from api.services import cursors
from api.services.collections import check_collections
from api.services.final_watch import final_watch
from api.services.gates import check_features, check_not_in_maintenance
from api.services.submission import DetectSubmission, checked_input, request_hash, validate_webhook_url
from db import tasks
from db.models import DetectTask, new_task_id, utcnow
from facequeue.core.enums import CreditState, Queue, TaskStatus
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, task_prefix, upload_key
from facequeue.lifecycle import billing
from facequeue.lifecycle.finalize import on_task_final
from facequeue.lifecycle.publish import publish_submitted
from facequeue.plumbing import metrics, task_events


class TaskFinal(ServiceError):
    status_code = 409
    code = "task_final"


def owned_task(session: Session, task_id: str, tenant_id: str | None) -> DetectTask:
    """The task, if the caller may see it; a task of another tenant is as absent as a missing one."""
    task = tasks.get_task(session, task_id, tenant_id)
    if task is None:
        raise _not_found(task_id)
    return task


def _not_found(task_id: str) -> NotFound:
    return NotFound(f"detect task {task_id} not found", field="detect_task_id")


class DetectService:
    def __init__(self, session: Session, settings: Settings, storage: MediaStorage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage

    # --- submit ------------------------------------------------------------
    def submit(self, submission: DetectSubmission) -> tuple[DetectTask, bool]:
        """Store the task, then publish it. Returns (task, created); created is False for an idempotent replay."""
        if submission.callback_url is not None:
            validate_webhook_url(submission.callback_url, self.settings, field="callback_url")
        check_not_in_maintenance(self.session, self.settings)
        check_features(submission.params, self.settings)
        check_collections(self.session, submission.tenant_id, submission.params)
        checked = checked_input(submission, self.settings)
        checked_hash = request_hash(checked, submission.callback_url)
        if submission.idempotency_key:
            existing = self._idempotent_replay(submission, checked_hash)
            if existing is not None:
                return existing, False
        kind = billing.kind_hint(checked.params, checked.url)
        cost = billing.estimated_cost(checked.params, kind, self.settings)

        task = DetectTask(
            id=new_task_id(),
            tenant_id=submission.tenant_id,
            kind=kind,
            source_url=checked.url,
            params=checked.params.model_dump(),
            queue=submission.queue,
            status=TaskStatus.QUEUED,
            progress_total=0,
            idempotency_key=submission.idempotency_key,
            request_hash=checked_hash,
            detect_id=_new_detect_id() if submission.with_detect_id else None,
            callback_url=submission.callback_url,
            api=submission.api,
            # Marked published in the same commit (one commit per submit); a failed publish unmarks it.
            published_at=utcnow(),
        )
        if submission.tenant_id is not None:
            # reserved in the task's own transaction: both commit, or neither
            if not billing.reserve(self.session, submission.tenant_id, cost):
                self.session.rollback()
                raise InsufficientCredits(f"Insufficient Credits: this task needs {cost}")
            task.cost, task.credit_state = cost, CreditState.RESERVED
        if checked.image_bytes is not None:
            task.upload_key = upload_key(task.id)
            self.storage.put_bytes(task.upload_key, checked.image_bytes)
        self.session.add(task)
        try:
            self.session.commit()
        except IntegrityError:
            # Lost a race on the same idempotency key: the other request's task is the answer.
            self.session.rollback()
            self.storage.delete_prefix(task_prefix(task.id))
            existing = self._idempotent_replay(submission, checked_hash)
            if existing is None:
                raise
            return existing, False
        metrics.count_submitted(kind, submission.api, submission.tenant_id, self.settings)
        publish_submitted(self.session, task, self.settings)
        return task, True

    async def submit_and_wait(self, submission: DetectSubmission) -> DetectTask:
        """The synchronous compat calls: submit at interactive priority and wait up to FACEQUEUE_SYNC_TIMEOUT
        without holding a thread (final_watch.py); on timeout the task keeps running and the error names it.
        The database work runs in threads, as the plain routes' does."""
        task, _ = await anyio.to_thread.run_sync(self.submit, replace(submission, queue=Queue.INTERACTIVE))
        timeout = self.settings.sync_timeout
        if not await final_watch().wait(task.id, timeout):
            raise SyncTimeout(task.id, timeout)
        await anyio.to_thread.run_sync(self.session.refresh, task)
        return task

    def _idempotent_replay(self, submission: DetectSubmission, checked_hash: str) -> DetectTask | None:
        existing = tasks.find_by_idempotency_key(self.session, submission.tenant_id, submission.idempotency_key)
        if existing is not None and existing.request_hash != checked_hash:
            raise IdempotencyConflict(
                "Idempotency-Key was already used with a different request body", field="Idempotency-Key"
            )
        return existing

    # --- read --------------------------------------------------------------
    def get(self, task_id: str, tenant_id: str | None) -> DetectTask:
        return owned_task(self.session, task_id, tenant_id)

    def get_undeleted(self, task_id: str, tenant_id: str | None) -> DetectTask:
        """For an API with no deleted state (crun): a task whose result was deleted is as absent as a missing one."""
        task = owned_task(self.session, task_id, tenant_id)
        if task.purged_at is not None:
            raise _not_found(task_id)
        return task

    def list(
        self, tenant_id: str | None, status: str | None, cursor: str | None, limit: int
    ) -> tuple[Sequence[DetectTask], str | None]:
        after = None
        if cursor:
            created, _, task_id = cursors.unseal(cursor, "tasks", tenant_id, self.settings).partition("|")
            after = tasks.TaskPosition(datetime.fromisoformat(created), task_id)
        rows, last = tasks.list_tasks(self.session, tenant_id, status, after, limit)
        if last is None:
            return rows, None
        return rows, cursors.seal(f"{last.created_at.isoformat()}|{last.task_id}", "tasks", tenant_id, self.settings)

    # --- cancel / delete ---------------------------------------------------
    def cancel(self, task_id: str, tenant_id: str | None) -> DetectTask:
        """Cancel a queued or processing task; a final one is left exactly as it is (its result kept)."""
        task = self.get(task_id, tenant_id)
        if not tasks.cancel_task(self.session, task.id):
            self.session.rollback()
            self.session.refresh(task)
            raise TaskFinal(
                f"detect task {task.id} is already {task.status}: there is nothing to cancel, and its result "
                f"is kept (DELETE /v1/detect/{task.id} deletes it)",
                field="detect_task_id",
            )
        on_task_final(self.session, task.id)
        self.session.commit()
        self.session.refresh(task)
        return task

    def cancel_or_purge(self, task_id: str, tenant_id: str | None) -> DetectTask:
        """Cancel a live task; for a finished one, delete its result and stored media. Either way it is deleted
        from then on (purged_at): crun, which has no such state, answers as for a missing task."""
        task = self.get(task_id, tenant_id)
        if tasks.cancel_task(self.session, task.id):
            on_task_final(self.session, task.id)
        tasks.purge_result(self.session, task.id)
        self.session.commit()
        if TaskStatus(task.status).is_final:
            self.storage.delete_prefix(task_prefix(task.id))
            task_events.forget(task.id, self.settings)  # its frames' faces, as the live events carried them
        self.session.refresh(task)
        return task


def _new_detect_id() -> str:
    return secrets.token_urlsafe(8)
