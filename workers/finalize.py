"""What happens once a task reaches a final status, whoever put it there (worker, API cancel, reaper).

Called in the same transaction that wrote the final status, right after it, so credits and the
webhook outbox move together with the status or not at all.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import batches
from db.models import DetectTask
from facequeue.settings import get_settings
from workers.credits import settle_credits
from workers.dispatch import dispatch
from workers.webhooks import queue_batch_event, queue_task_event


def on_task_final(session: Session, task_id: str) -> None:
    """Settle or refund the task's credits, queue its webhook event, and for a batch item, dispatch
    the tenant's next held item and close the batch when this was its last open item."""
    settings = get_settings()

    settle_credits(session, task_id, settings)
    # The event row commits with the final status; its message is published after that commit.
    queue_task_event(session, task_id, settings)
    batch_id, tenant_id = session.execute(
        select(DetectTask.batch_id, DetectTask.tenant_id).where(DetectTask.id == task_id)
    ).one()
    if batch_id is not None:
        dispatch(session, settings, [tenant_id])  # the tenant has room for its next held item
        finished = batches.finish_if_complete(session, batch_id)
        if finished is not None:
            queue_batch_event(session, finished, batches.status_counts(session, batch_id), settings)
