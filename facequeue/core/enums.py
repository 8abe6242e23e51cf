"""The named states and queues that every layer shares (the database stores their values)."""

from __future__ import annotations

from enum import StrEnum


class Queue(StrEnum):
    """Celery queues. The CPU pool takes from the first non-empty one of CPU_QUEUES (highest priority first);
    the I/O pool takes FETCH."""

    INTERACTIVE = "interactive"  # synchronous compat calls: a client is waiting on the connection
    DEFAULT = "default"  # single asynchronous tasks
    WEBHOOKS = "webhooks"  # its own queue, so slow receivers never hold up detection
    BATCH = "batch"  # batch items, fed by the fair dispatcher
    FETCH = "fetch"  # a task's URLs, downloaded on the I/O pool before it goes to its CPU queue above


CPU_QUEUES = tuple(queue for queue in Queue if queue != Queue.FETCH)


class SubmitApi(StrEnum):
    """The API a task came in through (stored on the task, so metrics can count by it)."""

    NATIVE = "native"  # POST /v1/detect
    BATCH = "batch"  # POST /v1/batches
    AKOOL = "akool"  # detect_faces and analyze_frames
    CRUN = "crun"
    ACEDATA = "acedata"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED})


class CreditState(StrEnum):
    """Where a task's credits are: reserved on submit, closed exactly once when the task is final."""

    NONE = "none"  # nothing reserved (no tenant)
    RESERVED = "reserved"
    SETTLED = "settled"  # charged what was used, the rest given back
    REFUNDED = "refunded"  # given back in full


class EventState(StrEnum):
    """A webhook event's delivery state."""

    PENDING = "pending"  # an attempt is due, scheduled or running
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # retries used up, or a permanent error (e.g. the SSRF guard refused the URL)
    DISABLED = "disabled"  # the endpoint answered 410 Gone (for this or an earlier event)
