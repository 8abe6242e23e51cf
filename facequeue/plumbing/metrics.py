"""Task metrics that both sides record: submitted (the API), finished and their timings (whoever finishes).

A task is finished by a worker, by the API (cancel) or by the reaper, all through `on_task_final`, so it
is counted there, by the process that finished it, once the transaction that made it final commits.
Prometheus adds the processes up (`sum` over every scrape target).

The tenant label is opt-in (FACEQUEUE_METRICS_TENANT_LABELS): each label value is a series of its own in
every process, so thousands of tenants would mean thousands of series per counter. Off, it reads "all".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from db.models import DetectTask
from facequeue.core.enums import TaskStatus
from facequeue.core.settings import Settings
from facequeue.plumbing.after_commit import after_commit

ALL_TENANTS = "all"  # the tenant label while tenant labels are off
NO_TENANT = "none"  # tasks without a tenant (FACEQUEUE_AUTH=off)
UNKNOWN = "unknown"  # a kind not known yet (no extension, never sniffed), or a task stored before `api` was
NO_ERROR = "none"

# Seconds. Waits run from a few milliseconds on an idle service to hours behind a deep batch backlog.
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# An image takes 0.05-1 s; a video runs up to its soft limit (FACEQUEUE_VIDEO_SOFT_TIME_LIMIT, 900 s).
PROCESSING_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900)

# A face's search in a collection: a few milliseconds through the HNSW index, more for large max_matches.
SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
COLLECTION_SEARCH = Histogram(
    "facequeue_collection_search_seconds",
    "One face's nearest-neighbour query in a face collection: from a task's search option or by face id",
    ["via"],
    buckets=SEARCH_BUCKETS,
)

TASKS_SUBMITTED = Counter(
    "facequeue_tasks_submitted",
    "Detect tasks stored, by media kind (as known at submit), API and tenant",
    ["kind", "api", "tenant"],
)
TASKS_FINISHED = Counter(
    "facequeue_tasks_finished",
    "Detect tasks that reached a final status, by status, media kind, error code, API and tenant",
    ["status", "kind", "error_code", "api", "tenant"],
)
TASK_QUEUE_WAIT = Histogram(
    "facequeue_task_queue_wait_seconds",
    "Submit to the start of the run that finished the task (succeeded or failed tasks)",
    ["kind"],
    buckets=WAIT_BUCKETS,
)
TASK_PROCESSING = Histogram(
    "facequeue_task_processing_seconds",
    "Start of the run that finished the task to its final status (succeeded or failed tasks)",
    ["kind"],
    buckets=PROCESSING_BUCKETS,
)
TASK_END_TO_END = Histogram(
    "facequeue_task_end_to_end_seconds",
    "Submit to final status (succeeded or failed tasks)",
    ["kind"],
    buckets=WAIT_BUCKETS,
)

# What on_task_final reads for the finished counter and the timings, in the read it makes anyway.
FINISHED_COLUMNS = (
    DetectTask.status,
    DetectTask.kind,
    DetectTask.error_code,
    DetectTask.api,
    DetectTask.created_at,
    DetectTask.started_at,
    DetectTask.finished_at,
)


def tenant_label(tenant_id: str | None, settings: Settings) -> str:
    if not settings.metrics_tenant_labels:
        return ALL_TENANTS
    return tenant_id or NO_TENANT


def count_submitted(kind: str | None, api: str, tenant_id: str | None, settings: Settings, tasks: int = 1) -> None:
    TASKS_SUBMITTED.labels(kind or UNKNOWN, api, tenant_label(tenant_id, settings)).inc(tasks)


def count_finished_after_commit(session: Session, task: Any, settings: Settings) -> None:
    """Count a task that was just made final (`task`: a row with FINISHED_COLUMNS and tenant_id), once
    `session` commits; a rollback drops it, so a status that never committed is never counted."""
    kind = task.kind or UNKNOWN
    finished = (
        (task.status, kind, task.error_code or NO_ERROR, task.api or UNKNOWN, tenant_label(task.tenant_id, settings)),
        _timings(task),
    )
    after_commit(session, _record_finished, finished)


def _timings(task: Any) -> tuple[float, float, float] | None:
    """(queue wait, processing, end to end) of a task a run took to the end; None for a canceled task or
    one that never started: neither says how long the service takes."""
    if task.status == TaskStatus.CANCELED or task.started_at is None or task.finished_at is None:
        return None
    return (
        _seconds(task.created_at, task.started_at),
        _seconds(task.started_at, task.finished_at),
        _seconds(task.created_at, task.finished_at),
    )


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _record_finished(_committed: Session, finished: list) -> None:
    for labels, timings in finished:
        TASKS_FINISHED.labels(*labels).inc()
        if timings is not None:
            kind = labels[1]
            wait, processing, end_to_end = timings
            TASK_QUEUE_WAIT.labels(kind).observe(wait)
            TASK_PROCESSING.labels(kind).observe(processing)
            TASK_END_TO_END.labels(kind).observe(end_to_end)
