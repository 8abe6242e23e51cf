"""The webhook outbox: event rows written with a final status, and their messages published after commit.

- `queue_task_event` (from `on_task_final`) adds the event row in the transaction that made the
  task final; its message is published only once that transaction commits
  (`facequeue.plumbing.after_commit`);
- `republish_due_deliveries` (the reaper) re-sends messages never published, or lost with the whole broker;
- `redeliver` (the API) sends an event again with a fresh round of retries.

Sending an attempt is the worker's delivery task (`workers/webhooks.py`).
"""

from __future__ import annotations

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import deliveries, tenants
from db.models import Batch, DetectTask, WebhookEvent, utcnow
from facequeue.core.enums import EventState
from facequeue.core.settings import Settings, get_settings
from facequeue.core.webhooks import batch_event, encode_event, new_webhook_id, task_event
from facequeue.lifecycle.publish import UNPUBLISHED_GRACE_SECONDS
from facequeue.plumbing.after_commit import after_commit
from facequeue.plumbing.broker import log_failed_publish, publish_webhook

log = structlog.get_logger(__name__)


def queue_task_event(session: Session, task_id: str, settings: Settings) -> WebhookEvent | None:
    """Add the event of a task that just became final, to be published once the session commits."""
    webhook_event = new_task_event(session, task_id, settings)
    if webhook_event is not None and webhook_event.state == EventState.PENDING:
        publish_after_commit(session, webhook_event.id, 0)
    return webhook_event


def new_task_event(session: Session, task_id: str, settings: Settings) -> WebhookEvent | None:
    """The event row for a final task: to its callback_url, else its tenant's webhook_url; None if neither.

    Batch items send nothing of their own: their batch sends one event when all of them are final.
    """
    # Columns, not the ORM object: the final status was written by an UPDATE the identity map hasn't seen.
    task = session.execute(
        select(
            DetectTask.tenant_id,
            DetectTask.callback_url,
            DetectTask.batch_id,
            DetectTask.status,
            DetectTask.error_code,
            DetectTask.error_msg,
            DetectTask.finished_at,
        ).where(DetectTask.id == task_id)
    ).one()
    if task.batch_id is not None:
        return None
    payload = task_event(task_id, task.status, task.error_code, task.error_msg, task.finished_at or utcnow(), settings)
    return _new_event(session, task_id, task.tenant_id, task.callback_url, payload)


def queue_batch_event(session: Session, batch: Batch, counts: dict[str, int], settings: Settings) -> None:
    """The one event of a batch whose items are all final (subject id: the batch id)."""
    webhook_event = _new_event(
        session, batch.id, batch.tenant_id, batch.callback_url, batch_event(batch, counts, settings)
    )
    if webhook_event is not None and webhook_event.state == EventState.PENDING:
        publish_after_commit(session, webhook_event.id, 0)


def _new_event(
    session: Session, subject_id: str, tenant_id: str | None, callback_url: str | None, payload: dict
) -> WebhookEvent | None:
    tenant = tenants.get_tenant(session, tenant_id)
    url = callback_url or (tenant.webhook_url if tenant else None)
    if not url:
        return None
    disabled = deliveries.endpoint_disabled(session, tenant_id, url)
    webhook_event = WebhookEvent(
        id=new_webhook_id(),
        task_id=subject_id,
        tenant_id=tenant_id,
        type=payload["type"],
        url=url,
        body=encode_event(payload),
        state=EventState.DISABLED if disabled else EventState.PENDING,
        attempts=0,
        round_start=0,
        next_attempt_at=None if disabled else utcnow(),
        created_at=utcnow(),
    )
    session.add(webhook_event)
    return webhook_event


def redeliver(session: Session, event_id: str) -> None:
    """Send the event again now, same webhook-id, with a fresh round of retries; published after commit."""
    attempts = deliveries.rearm_event(session, event_id)
    publish_after_commit(session, event_id, attempts)


def republish_due_deliveries(session: Session) -> int:
    """For the reaper: publish again the attempts due whose message was never sent (or the broker lost it:
    reaper.py). An attempt merely waiting in the queue is never sent twice.

    The messages go out when `session` next commits; duplicates are harmless (attempts are fenced).
    """
    due = deliveries.events_due_for_republish(session, UNPUBLISHED_GRACE_SECONDS)
    for webhook_event in due:
        publish_after_commit(session, webhook_event.id, webhook_event.attempts)
    return len(due)


def publish_after_commit(session: Session, event_id: str, attempts: int, countdown: float = 0.0) -> None:
    """Publish the attempt message only once the rows it refers to are committed (dropped on rollback)."""
    after_commit(session, _publish_all, (event_id, attempts, countdown))


def _publish_all(committed: Session, attempts: list[tuple[str, int, float]]) -> None:
    settings = get_settings()
    for event_id, attempt, countdown in attempts:
        _publish(committed, event_id, attempt, countdown, settings)


def _publish(committed: Session, event_id: str, attempts: int, countdown: float, settings: Settings) -> None:
    # Never raise: the caller's commit already succeeded, and republish_due_deliveries recovers a lost publish.
    try:
        publish_webhook(event_id, attempts, countdown, settings)
        # after_commit may not use the committed session for SQL; a short one of its own records the publish.
        with Session(committed.get_bind()) as session, session.begin():
            deliveries.mark_published(session, event_id, attempts)
    except Exception as error:
        log_failed_publish("webhook_publish_failed", error, event_id=event_id, attempts=attempts)
