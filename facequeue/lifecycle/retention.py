"""Retention of personal data: every upload, crop, preview and result holds faces.

- A task's upload is deleted as soon as its final status commits, whoever wrote it (worker, API cancel,
  reaper): `on_task_final` calls `delete_upload_after_commit`. The row keeps its `upload_key` until the
  object is gone, so when the process dies in between, the reaper's next pass deletes it
  (`delete_kept_uploads`). What the fetch stage downloads is stored as the task's upload too
  (workers/media/staging.py), so it goes the same way. Previews need neither: the worker keeps its own
  downscaled frames for them (until FACEQUEUE_PREVIEW_TTL, lifecycle/previews.py).
- Final tasks are kept FACEQUEUE_RETENTION after they finished (or their tenant's own retention), then the
  reaper purges them (`purge_expired`) in bounded batches: each batch deletes the tasks' storage objects
  (their whole prefix: upload, crops, previews) and then, in one transaction, their rows with their webhook
  events and delivery attempts. A pass cut short anywhere leaves rows whose objects are (partly) gone; the
  next pass finds them again and finishes, so no object outlives its row. Batches whose items are all gone
  follow, with their own events and attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from db import retention
from db.models import utcnow
from facequeue.core.settings import Settings, get_settings
from facequeue.core.storage import MediaStorage, get_storage, task_prefix
from facequeue.plumbing.after_commit import after_commit

log = structlog.get_logger(__name__)

PURGE_BATCH_ROWS = 500  # rows per transaction: a short lock, and an IN list every backend takes
# Batches per reaper pass: 5,000 tasks every FACEQUEUE_REAPER_INTERVAL (20,000 a minute), while a backlog
# of expired tasks never holds up the pass's recovery work for long.
PURGE_MAX_BATCHES = 10
DELETE_CONCURRENCY = 8  # task prefixes deleted at once: on S3 each is a LIST and a DELETE of tens of ms


@dataclass
class PurgeReport:
    tasks: int = 0
    batches: int = 0


# --- uploads of final tasks ----------------------------------------------------------------------


def delete_upload_after_commit(session: Session, task_id: str, upload_key: str) -> None:
    """Delete the upload of a task made final in `session`'s transaction, once it commits (nothing on
    rollback: the task may run again)."""
    after_commit(session, _delete_uploads, (task_id, upload_key))


def _delete_uploads(committed: Session, finals: list[tuple[str, str]]) -> None:
    uploads = dict(finals)
    # Never raise: the caller's commit succeeded, and the reaper deletes what is left.
    try:
        get_storage(get_settings()).delete_keys(list(uploads.values()))
        # after_commit may not use the committed session for SQL: a short one of its own records it.
        with Session(committed.get_bind()) as session, session.begin():
            for chunk in _chunks(list(uploads), PURGE_BATCH_ROWS):
                retention.forget_uploads(session, chunk)
    except Exception as error:
        log.warning("upload_deletion_left_to_reaper", tasks=len(uploads), error=type(error).__name__)


def delete_kept_uploads(session: Session, settings: Settings, storage: MediaStorage | None = None) -> int:
    """The reaper's step: delete the uploads of final tasks that still have one (their process died right
    after the final commit). Commits."""
    kept = retention.tasks_with_kept_upload(session, PURGE_BATCH_ROWS)
    if kept:
        (storage or get_storage(settings)).delete_keys([key for _, key in kept])
        retention.forget_uploads(session, [task_id for task_id, _ in kept])
        session.commit()
    return len(kept)


# --- purging what is past its retention ----------------------------------------------------------


def purge_expired(
    session: Session,
    settings: Settings,
    storage: MediaStorage | None = None,
    batch_rows: int = PURGE_BATCH_ROWS,
    max_batches: int = PURGE_MAX_BATCHES,
) -> PurgeReport:
    """The reaper's step: purge final tasks past their retention, then batches left without items, each
    `batch_rows` per transaction and at most `max_batches` transactions of each. Commits."""
    storage = storage or get_storage(settings)
    now, default_seconds = utcnow(), settings.retention

    def expired_tasks(limit: int) -> list[str]:
        return retention.expired_tasks(session, now, default_seconds, limit)

    def remove_tasks(task_ids: Sequence[str]) -> int:
        # objects first: a crash then leaves rows to retry. Every deletion runs before the first error is raised
        # (pool.map would cancel those not started yet, so what a failed pass deleted would be left to chance).
        with ThreadPoolExecutor(DELETE_CONCURRENCY) as pool:
            deletions = [pool.submit(storage.delete_prefix, task_prefix(task_id)) for task_id in task_ids]
        for deletion in deletions:
            deletion.result()
        return retention.delete_tasks(session, task_ids)

    def emptied_batches(limit: int) -> list[str]:
        return retention.emptied_batches(session, now, default_seconds, limit)

    def remove_batches(batch_ids: Sequence[str]) -> int:
        return retention.delete_batches(session, batch_ids)

    return PurgeReport(
        tasks=_in_batches(session, expired_tasks, remove_tasks, batch_rows, max_batches),
        batches=_in_batches(session, emptied_batches, remove_batches, batch_rows, max_batches),
    )


def _in_batches(
    session: Session,
    find: Callable[[int], list[str]],
    remove: Callable[[Sequence[str]], int],
    batch_rows: int,
    max_batches: int,
) -> int:
    """Find up to `batch_rows` ids and remove them, one transaction each, until none are left or
    `max_batches` transactions ran; how many rows went."""
    removed = 0
    for _ in range(max_batches):
        found = find(batch_rows)
        if not found:
            break
        removed += remove(found)
        session.commit()
        if len(found) < batch_rows:
            break
    return removed


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
