"""The Celery application and how detection work is published to it.

The embedded default uses kombu's filesystem transport (no broker server); the distributed
form sets FACEQUEUE_BROKER_URL=redis://... The code path is the same. The API imports this
module only to publish: task code is loaded by workers (`include`), never by the API.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery
from kombu import Queue

from facequeue.settings import Settings, get_settings
from workers import broker_files

DETECT_TASK_NAME = "facequeue.detect"
WEBHOOK_TASK_NAME = "facequeue.webhook"
WEBHOOK_QUEUE = "webhooks"  # its own queue, so slow receivers never hold up detection
# Highest priority first: workers take from the first non-empty queue (Redis: queue_order_strategy=priority).
QUEUES = ("interactive", "default", WEBHOOK_QUEUE, "batch")
# An attempt's hard limit beyond FACEQUEUE_WEBHOOK_TIMEOUT: name resolution has no timeout of its own.
WEBHOOK_TIME_LIMIT_MARGIN = 30.0


def create_celery(settings: Settings) -> Celery:
    # embedded: kombu's filesystem transport with atomic message files (workers/broker_files.py)
    broker = f"{broker_files.SCHEME}://" if settings.is_embedded else settings.resolved_broker_url
    app = Celery("facequeue", broker=broker, include=["workers.tasks", "workers.webhooks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue="default",
        task_queues=[Queue(name, routing_key=name) for name in QUEUES],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_concurrency=settings.worker_concurrency,
        broker_transport_options=_transport_options(settings),
    )
    return app


def _transport_options(settings: Settings) -> dict:
    if not settings.is_embedded:
        # Redis redelivers an unacked message after visibility_timeout; the reaper usually acts long before.
        return {
            "visibility_timeout": int(settings.video_time_limit * 2),
            "queue_order_strategy": "priority",
            "global_keyprefix": settings.broker_key_prefix,
        }
    folder = settings.broker_folder
    for sub in ("queue", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
        # Sleeps only while every queue is empty or the pool is full, so a short interval costs little
        # and a pool process that finishes a task gets the next one without waiting.
        "polling_interval": 0.01,
    }


@lru_cache
def get_celery() -> Celery:
    return create_celery(get_settings())


def publish_detect(task_id: str, queue: str, kind: str | None, settings: Settings) -> None:
    """Send one detect message; time limits follow the media kind (video when still unknown)."""
    soft, hard = (
        (settings.image_soft_time_limit, settings.image_time_limit)
        if kind == "image"
        else (settings.video_soft_time_limit, settings.video_time_limit)
    )
    get_celery().send_task(
        DETECT_TASK_NAME, args=[task_id], queue=queue, routing_key=queue, soft_time_limit=soft, time_limit=hard
    )


def publish_webhook(event_id: str, attempts: int, countdown: float, settings: Settings) -> None:
    """Send one webhook attempt message, due in `countdown` seconds; `attempts` fences out stale copies."""
    get_celery().send_task(
        WEBHOOK_TASK_NAME,
        args=[event_id, attempts],
        queue=WEBHOOK_QUEUE,
        routing_key=WEBHOOK_QUEUE,
        countdown=countdown or None,  # None: an ordinary message, not one the worker holds until an ETA
        time_limit=settings.webhook_timeout + WEBHOOK_TIME_LIMIT_MARGIN,
    )
