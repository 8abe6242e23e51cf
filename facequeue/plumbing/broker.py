"""The Celery application and how work is published to it.

The broker is always Redis: FACEQUEUE_BROKER_URL, or the one `facequeue serve` starts on a Unix socket in
the data dir. The API only publishes here; the worker registers its tasks on this same app
(`workers/tasks.py`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import kombu.exceptions
import redis
import structlog
from celery import Celery
from kombu import Queue as KombuQueue
from redis.backoff import NoBackoff
from redis.retry import Retry

from facequeue.core.enums import Queue
from facequeue.core.settings import Settings, get_settings

log = structlog.get_logger(__name__)

DETECT_TASK_NAME = "facequeue.detect"
FETCH_TASK_NAME = "facequeue.fetch"  # a detect task's downloads, on the I/O pool (Queue.FETCH)
WEBHOOK_TASK_NAME = "facequeue.webhook"
# An attempt's hard limit beyond FACEQUEUE_WEBHOOK_TIMEOUT: name resolution has no timeout of its own.
WEBHOOK_TIME_LIMIT_MARGIN = 30.0
# A publish (or another Redis call) that failed because the broker did not answer or dropped the connection.
BROKER_UNAVAILABLE = (kombu.exceptions.OperationalError, redis.ConnectionError, redis.TimeoutError)
# Present in Redis while it holds what was published to it: gone after a restart without persistence, a
# flush or a failover to an empty replica, which the reaper takes as "every message is lost" (reaper.py).
BROKER_SENTINEL_KEY = "facequeue:broker-sentinel"  # after FACEQUEUE_BROKER_KEY_PREFIX


def create_celery(settings: Settings) -> Celery:
    app = Celery("facequeue", broker=settings.resolved_broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=Queue.DEFAULT.value,
        # Queue's order is the priority order (Redis: queue_order_strategy=priority).
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in Queue],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_concurrency=settings.worker_concurrency,
        broker_transport_options=_transport_options(settings),
        # One retry at once (a connection the broker closed is opened again); a broker that doesn't answer
        # costs FACEQUEUE_REDIS_TIMEOUT per try, and the caller's fallback takes over (the reaper publishes).
        task_publish_retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0},
        # Celery waits this long for a result a dead pool process might have sent before it reports the
        # task lost (default 10 s); results are ignored here, so there is nothing to wait for.
        worker_lost_wait=1.0,
    )
    return app


def _transport_options(settings: Settings) -> dict:
    # Redis puts an unacked message back after visibility_timeout: a worker that died (SIGKILL, lost host)
    # holding a message it had not claimed yet loses nothing. Its claimed runs are recovered sooner
    # (worker name, pool process, heartbeat: reaper.py); webhook retries it held (ETA) come back then.
    return {
        "visibility_timeout": int(settings.video_time_limit * 2),
        "queue_order_strategy": "priority",
        "global_keyprefix": settings.broker_key_prefix,
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }


@lru_cache
def get_celery() -> Celery:
    return create_celery(get_settings())


def log_failed_publish(event: str, error: Exception, **context: object) -> None:
    """A broker that is away is an outage, not a bug: one line for it (a rendered traceback costs the request
    seconds), a traceback for anything else."""
    if isinstance(error, BROKER_UNAVAILABLE):
        log.warning(event, error=type(error).__name__, **context)
    else:
        log.exception(event, **context)


def queue_lengths(settings: Settings) -> dict[Queue, int]:
    """Messages waiting in each queue (published, not taken by a worker yet), read in one connection; one
    try: a broker that does not answer costs FACEQUEUE_REDIS_TIMEOUT (the transport's socket timeouts)."""
    with get_celery().connection_for_read(transport_options={"max_retries": 1}) as connection:
        connection.ensure_connection(max_retries=1, timeout=settings.redis_timeout)
        channel = connection.default_channel
        # a declare (not passive) answers 0 for a queue whose Redis list is gone because it emptied
        return {queue: channel.queue_declare(queue=queue.value).message_count for queue in Queue}


def redis_options(timeout: float) -> dict[str, Any]:
    """redis-py options of every Redis client (broker sentinel, rate limits): each connect and each reply
    bounded by `timeout` (FACEQUEUE_REDIS_TIMEOUT), and no retries (redis-py's default of 3, with backoff,
    would multiply that wait)."""
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": Retry(NoBackoff(), 0)}


def broker_lost_messages(settings: Settings) -> bool:
    """Whether the Redis broker lost what it held since `mark_broker_intact` (also true before the first
    mark)."""
    return not redis_client(settings).exists(_sentinel_key(settings))


def mark_broker_intact(settings: Settings) -> None:
    """Set once every message the broker lost was published again."""
    redis_client(settings).set(_sentinel_key(settings), "1")


def _sentinel_key(settings: Settings) -> str:
    return settings.broker_key_prefix + BROKER_SENTINEL_KEY


def redis_client(settings: Settings) -> redis.Redis:
    """The Redis broker's client: one pooled client per URL and process, bounded by `redis_options`."""
    return _redis(settings.redis_url, settings.redis_timeout)


@lru_cache
def _redis(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(url, **redis_options(timeout))


def time_limits(kind: str | None, settings: Settings) -> tuple[float, float]:
    """A detect run's (soft, hard) time limits: they follow the media kind (video when still unknown)."""
    if kind == "image":
        return settings.image_soft_time_limit, settings.image_time_limit
    return settings.video_soft_time_limit, settings.video_time_limit


def media_to_fetch(source_url: str | None, params: dict[str, Any], upload_key: str | None) -> bool:
    """Whether a task's media are URLs not downloaded yet. The fetch stage stores what it downloads as the
    task's upload (workers/fetch_stage.py), so a task with an upload_key is ready for a CPU slot."""
    return upload_key is None and bool(source_url or params.get("frame_urls"))


def publish_detect(task_id: str, queue: str, kind: str | None, settings: Settings, fetch_first: bool = False) -> None:
    """Send one detect message to `queue` (a CPU slot's), or with `fetch_first` to the fetch stage's queue, whose
    I/O pool downloads the media and then sends the task on to `queue` (the row keeps it). Only CPU runs have
    Celery time limits: the I/O pool (threads) cannot enforce them, its downloads keep a deadline of their own."""
    if fetch_first:
        _send_task(FETCH_TASK_NAME, [task_id], queue=Queue.FETCH, routing_key=Queue.FETCH)
        return
    soft, hard = time_limits(kind, settings)
    _send_task(DETECT_TASK_NAME, [task_id], queue=queue, routing_key=queue, soft_time_limit=soft, time_limit=hard)


def publish_webhook(event_id: str, attempts: int, countdown: float, settings: Settings) -> None:
    """Send one webhook attempt message, due in `countdown` seconds; `attempts` fences out stale copies."""
    _send_task(
        WEBHOOK_TASK_NAME,
        [event_id, attempts],
        queue=Queue.WEBHOOKS,
        routing_key=Queue.WEBHOOKS,
        countdown=countdown or None,  # None: an ordinary message, not one the worker holds until an ETA
        time_limit=settings.webhook_timeout + WEBHOOK_TIME_LIMIT_MARGIN,
    )


def _send_task(name: str, args: list[str | int], **options: Any) -> None:
    # The args' repr for the worker's logs is given: Celery's own (saferepr) costs a tenth of a publish.
    get_celery().send_task(name, args=args, argsrepr=repr(args), kwargsrepr="{}", **options)
