"""What happens once a task reaches a final status, whoever put it there (worker, API cancel, reaper).

Called in the same transaction that wrote the final status, right after it, so credits and the
webhook outbox move together with the status or not at all.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import batch_persons, batches
from db.models import DetectTask
from facequeue.core.enums import CreditState
from facequeue.core.settings import get_settings
from facequeue.lifecycle import billing, retention
from facequeue.lifecycle.dispatch import dispatch
from facequeue.lifecycle.outbox import queue_batch_event, queue_task_event
from facequeue.plumbing import metrics, task_events


def on_task_final(session: Session, task_id: str) -> None:
    """Count the task in the metrics, settle or refund its credits, queue its webhook event, announce the
    status to its live event streams and delete its upload (after commit), and for a batch item, dispatch
    the tenant's next held item and close the batch when this was its last open item (its persons waiting for
    the end then get their batch-wide ids)."""
    settings = get_settings()
    # One read decides which of the steps apply (most tasks need none of them) and feeds the metrics.
    task = session.execute(
        select(
            DetectTask.credit_state,
            DetectTask.batch_id,
            DetectTask.tenant_id,
            DetectTask.callback_url,
            DetectTask.error_msg,
            DetectTask.upload_key,
            *metrics.FINISHED_COLUMNS,
        ).where(DetectTask.id == task_id)
    ).one()
    metrics.count_finished_after_commit(session, task, settings)
    task_events.announce_after_commit(session, task_id, task.status, task.error_code, task.error_msg)
    if task.upload_key is not None:
        retention.delete_upload_after_commit(session, task_id, task.upload_key)
    if task.credit_state == CreditState.RESERVED:
        billing.settle(session, task_id, settings)
    if task.batch_id is None:
        if task.callback_url or task.tenant_id:  # a webhook URL may exist: the event row commits with the status
            queue_task_event(session, task_id, settings)
        return
    dispatch(session, settings, [task.tenant_id])  # the tenant has room for its next held item
    finished = batches.finish_if_complete(session, task.batch_id)
    if finished is not None:
        if finished.persons:
            batch_persons.settle(session, finished.id)
        queue_batch_event(session, finished, batches.status_counts(session, task.batch_id), settings)
