"""Recovers tasks whose message or worker was lost.

One pass at a time per deployment, however many API replicas run the loop and `facequeue reap` runs beside
them: a pass holds the lock REAPER_LOCK_KEY (db/locks.py), and a process that finds it held skips its pass.

A message is sent again only when it is missing, never because its task waits: in a deep backlog every
copy would be another message in the broker and another publish and UPDATE in the API. It goes missing:
- when the broker lost every message (Redis restarted without persistence, was flushed, or failed over to
  an empty replica: its sentinel key is gone): every queued task and pending webhook attempt is sent again;
- when the publish after the commit failed (the row is unmarked) or its process died first (a webhook
  attempt is marked only after its publish): sent again once UNPUBLISHED_GRACE_SECONDS passed;
- when its process died between committing a task marked published and publishing it (an API replica
  killed mid-submit): the one case a marked row has no message, while the broker holds every other.
  Its queue then runs dry in front of it, so a task published over the grace ago whose queue is empty is
  sent again: a length per queue each pass, whatever the backlog.
A worker that dies holding a message loses nothing: with acks_late its pool process's message goes back
to the queue (reject on worker lost), and Redis puts a dead worker's unacked messages back after the
visibility timeout (broker.py). What its runs held is recovered here:
- processing rows whose run was lost are re-queued, or failed once they used up their attempts: at
  once when a worker saw its pool process die or restarts under its old name (`recover_runs_of`),
  otherwise once their heartbeat went stale;
- frames kept for previews past FACEQUEUE_PREVIEW_TTL are deleted;
- uploads of final tasks still stored are deleted, and final tasks past their retention purged (retention.py).

Duplicate messages are harmless: only one run can claim a queued row.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from db import deliveries, tasks
from db.locks import try_exclusive
from db.models import DetectTask, utcnow
from facequeue.core.enums import TaskStatus
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from facequeue.lifecycle.dispatch import dispatch
from facequeue.lifecycle.finalize import on_task_final
from facequeue.lifecycle.outbox import republish_due_deliveries
from facequeue.lifecycle.previews import purge_expired_previews
from facequeue.lifecycle.publish import UNPUBLISHED_GRACE_SECONDS, publish_again
from facequeue.lifecycle.retention import delete_kept_uploads, purge_expired
from facequeue.plumbing import task_events
from facequeue.plumbing.broker import broker_lost_messages, mark_broker_intact, queue_lengths

log = structlog.get_logger(__name__)

# The Postgres advisory lock a reaper pass holds (int.from_bytes(b"fq-reap")); per database, so per deployment.
REAPER_LOCK_KEY = 28834887631200624


@dataclass
class ReapReport:
    republished: int = 0
    requeued: int = 0
    failed: int = 0
    webhooks_republished: int = 0
    dispatched: int = 0
    previews_purged: int = 0
    uploads_deleted: int = 0
    tasks_purged: int = 0
    batches_purged: int = 0


def reap(session: Session, settings: Settings) -> ReapReport | None:
    """One reaper pass; None (nothing done) while another process of the deployment runs one."""
    with try_exclusive(session.get_bind(), REAPER_LOCK_KEY) as held:
        if not held:
            log.debug("reaper_pass_skipped", reason="another process holds the reaper lock")
            return None
        return _reap_pass(session, settings)


def _reap_pass(session: Session, settings: Settings) -> ReapReport:
    report = ReapReport()
    for task in tasks.stale_processing_tasks(session, settings.heartbeat_stale_after):
        _recover_run(session, task, f"heartbeat lost on each of {task.attempts} attempts", settings, report)
    if broker_lost_messages(settings):
        report.republished += republish_lost_messages(session, settings)
        mark_broker_intact(settings)  # only now: a pass that failed half-way leaves the next pass to finish it
    empty_queues = [queue for queue, length in queue_lengths(settings).items() if length == 0]
    for task in tasks.queued_tasks_to_republish(session, UNPUBLISHED_GRACE_SECONDS, empty_queues):
        publish_again(session, task.id, task.queue, task.kind, settings)
        report.republished += 1
    report.webhooks_republished = republish_due_deliveries(session)
    report.dispatched = dispatch(session, settings)
    report.previews_purged = purge_expired_previews(session, settings)
    session.commit()
    # last: the recovery above is never held up by deletions
    report.uploads_deleted = delete_kept_uploads(session, settings)
    purged = purge_expired(session, settings)
    report.tasks_purged, report.batches_purged = purged.tasks, purged.batches
    return report


def republish_lost_messages(session: Session, settings: Settings) -> int:
    """Publish again every queued task whose message went out before now: the broker lost them all. Pending
    webhook attempts sent before now count as never sent: this pass's `republish_due_deliveries` sends
    those due, the others follow when they fall due."""
    lost_before = utcnow()
    deliveries.forget_publishes_before(session, lost_before)
    session.commit()  # before the sentinel is set again: a pass that dies next leaves no attempt marked sent
    republished = 0
    # each publish marks its row published now, after `lost_before`, so every batch is new rows
    while batch := tasks.queued_tasks_published_before(session, lost_before):
        for task in batch:
            publish_again(session, task.id, task.queue, task.kind, settings)
        session.commit()
        republished += len(batch)
    log.warning("broker_lost_messages", republished=republished)
    return republished


def recover_runs_of(session: Session, settings: Settings, worker_name: str, worker_pid: int | None = None) -> int:
    """Re-queue at once what a dead run held: the worker's pool process `worker_pid` died under it, or (no
    pid) the worker starts again under the name of a predecessor that died. Celery requires a running
    worker's name to be unique, so no live run is taken. Returns how many tasks were recovered."""
    report = ReapReport()
    for task in tasks.tasks_claimed_by(session, worker_name, worker_pid):
        why = f"its worker process died on attempt {task.attempts}, the last allowed"
        _recover_run(session, task, why, settings, report)
    return report.requeued + report.failed


def _recover_run(session: Session, task: DetectTask, why: str, settings: Settings, report: ReapReport) -> None:
    """Re-queue and publish a processing task whose run was lost, or fail it (`why`) after its last attempt."""
    if task.attempts >= settings.max_attempts:
        error = TaskError(ErrorCode.WORKER_LOST, why)
        if tasks.fail_lost_run(session, task, error.code, error.message):
            on_task_final(session, task.id)
            report.failed += 1
            log.warning("task_failed_worker_lost", task_id=task.id, attempts=task.attempts)
    elif tasks.requeue_lost_run(session, task):
        session.commit()
        task_events.announce_status(task.id, TaskStatus.QUEUED, settings)
        publish_again(session, task.id, task.queue, task.kind, settings)
        report.requeued += 1
        log.warning("task_requeued", task_id=task.id, attempts=task.attempts)
    session.commit()
