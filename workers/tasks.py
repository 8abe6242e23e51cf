"""The worker's Celery tasks: shells that hand the message to the pipeline or the webhook sender.

While the database is away (the claim, or any other step, raises one of DATABASE_UNAVAILABLE), a
message goes back to the broker instead of being acked and lost: Celery publishes it again, due after
1, 2, 4... seconds with full jitter (so workers don't return all at once), never more than
DB_RETRY_MAX_DELAY, for as long as the outage lasts. A retry whose task was claimed meanwhile finds it
taken and does nothing.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.settings import get_settings
from facequeue.plumbing.broker import DETECT_TASK_NAME, FETCH_TASK_NAME, WEBHOOK_TASK_NAME, get_celery
from workers.fetch_stage import run_fetch_task
from workers.lost_runs import DetectRequest
from workers.pipeline import run_detect_task
from workers.webhooks import deliver_event

DB_RETRY_MAX_DELAY = 10  # seconds: the longest a message waits to try again once the database is back
RETRY_WHILE_DATABASE_AWAY: dict[str, Any] = {
    "autoretry_for": DATABASE_UNAVAILABLE,
    "retry_backoff": True,
    "retry_backoff_max": DB_RETRY_MAX_DELAY,
    "retry_jitter": True,
    "max_retries": None,
}

celery = get_celery()


@celery.task(name=DETECT_TASK_NAME, bind=True, Request=DetectRequest, **RETRY_WHILE_DATABASE_AWAY)
def detect(self: Task, task_id: str) -> None:
    run_detect_task(task_id, get_settings(), self.request.hostname)


@celery.task(name=FETCH_TASK_NAME, bind=True, **RETRY_WHILE_DATABASE_AWAY)
def fetch(self: Task, task_id: str) -> None:
    run_fetch_task(task_id, get_settings(), self.request.hostname)


@celery.task(name=WEBHOOK_TASK_NAME, **RETRY_WHILE_DATABASE_AWAY)
def deliver(event_id: str, attempts: int) -> None:
    deliver_event(event_id, attempts, get_settings())
