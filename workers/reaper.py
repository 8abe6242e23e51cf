"""Recovers tasks whose message or worker was lost.

- queued rows never published (publish failed after commit), or published so long ago that
  the broker may have dropped the message, are published again;
- processing rows whose heartbeat went stale are re-queued, or failed once they used up
  their attempts.

Duplicate messages are harmless: only one run can claim a queued row.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from db import queries
from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings
from workers.celery_app import publish_detect
from workers.dispatch import dispatch
from workers.finalize import on_task_final
from workers.webhooks import republish_due_deliveries

log = structlog.get_logger(__name__)

UNPUBLISHED_GRACE_SECONDS = 30.0  # the API publishes right after commit; give it time before stepping in


@dataclass
class ReapReport:
    republished: int = 0
    requeued: int = 0
    failed: int = 0
    webhooks_republished: int = 0
    dispatched: int = 0


def reap(session: Session, settings: Settings) -> ReapReport:
    report = ReapReport()
    for task in queries.stale_processing_tasks(session, settings.heartbeat_stale_after):
        if task.attempts >= settings.max_attempts:
            error = TaskError(ErrorCode.WORKER_LOST, f"heartbeat lost on each of {task.attempts} attempts")
            if queries.fail_stale_task(session, task, error.code, error.message):
                on_task_final(session, task.id)
                report.failed += 1
                log.warning("task_failed_worker_lost", task_id=task.id, attempts=task.attempts)
        elif queries.requeue_stale_task(session, task):
            session.commit()
            _publish(session, task.id, task.queue, task.kind, settings)
            report.requeued += 1
            log.warning("task_requeued", task_id=task.id, attempts=task.attempts)
        session.commit()
    for task in queries.queued_tasks_to_republish(session, UNPUBLISHED_GRACE_SECONDS, settings.republish_queued_after):
        _publish(session, task.id, task.queue, task.kind, settings)
        report.republished += 1
    report.webhooks_republished = republish_due_deliveries(session, settings)
    report.dispatched = dispatch(session, settings)
    session.commit()
    return report


def _publish(session: Session, task_id: str, queue: str, kind: str | None, settings: Settings) -> None:
    publish_detect(task_id, queue, kind, settings)
    queries.mark_published(session, task_id)
