"""Backlog gauges, read at scrape time: from the database (the source of truth) and from the broker.

The database decides: batch items wait there, held, with at most FACEQUEUE_TENANT_MAX_IN_FLIGHT per
tenant on the broker, so the broker's list lengths under-count the work; they are exported beside it
to show messages that are published but not yet taken. One read serves every scrape for
FACEQUEUE_METRICS_CACHE_SECONDS, so several Prometheus servers or a short interval cost no more
queries; each read is bounded like every other (FACEQUEUE_DATABASE_TIMEOUT, FACEQUEUE_REDIS_TIMEOUT).
A source that cannot be read is reported by `facequeue_metrics_source_up` and its families are left
out of that scrape.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric

from db import backlog
from facequeue.core.enums import CPU_QUEUES, Queue
from facequeue.core.settings import Settings
from facequeue.plumbing.broker import queue_lengths
from facequeue.plumbing.sessions import session_scope
from facequeue.plumbing.worker_liveness import worker_alive

log = structlog.get_logger(__name__)

# the queues a detect task's row names (a task waiting for its downloads is on Queue.FETCH, its row on one of these)
TASK_QUEUES = tuple(queue.value for queue in CPU_QUEUES if queue != Queue.WEBHOOKS)


class BacklogCollector:
    """A prometheus-client collector (register it on a registry) of the backlog gauges."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # concurrent scrapes wait for one read instead of each making one
        self._read_at: float | None = None
        self._families: list[Metric] = []

    def describe(self) -> list[Metric]:
        return [
            _tasks(),
            _oldest_age(),
            _webhooks_pending(),
            _indexed_faces(),
            _broker_lengths(),
            _workers_alive(),
            _source_up(),
        ]

    def collect(self) -> list[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self.settings.metrics_cache_seconds:
                self._families = self._read()
                self._read_at = now
            return self._families

    def _read(self) -> list[Metric]:
        up = _source_up()
        families: list[Metric] = []
        try:
            families += _database_families(self.settings)
            up.add_metric(["database"], 1)
        except Exception:  # a scrape reports a source it cannot read, it never fails
            log.warning("metrics_database_unreadable", exc_info=True)
            up.add_metric(["database"], 0)
        try:
            families += _broker_families(self.settings)
            up.add_metric(["broker"], 1)
        except Exception:
            log.warning("metrics_broker_unreadable", exc_info=True)
            up.add_metric(["broker"], 0)
        return [*families, up]


def _database_families(settings: Settings) -> list[Metric]:
    with session_scope() as session:
        rows = backlog.task_backlog(session)
        webhooks_pending = backlog.pending_webhook_events(session)
        faces = backlog.indexed_faces(session)
    counts = {(queue, state): 0 for queue in TASK_QUEUES for state in backlog.BACKLOG_STATES}
    oldest: dict[str, datetime] = {}
    for row in rows:
        counts[(row.queue, row.state)] = row.tasks
        if row.state != "processing" and row.oldest_created_at is not None:
            oldest[row.queue] = min(oldest.get(row.queue, row.oldest_created_at), row.oldest_created_at)
    tasks = _tasks()
    for (queue, state), count in sorted(counts.items()):
        tasks.add_metric([queue, state], count)
    now = datetime.now(UTC)
    age = _oldest_age()
    for queue in sorted({queue for queue, _ in counts}):
        age.add_metric([queue], max(0.0, (now - oldest[queue]).total_seconds()) if queue in oldest else 0.0)
    pending = _webhooks_pending()
    pending.add_metric([], webhooks_pending)
    indexed = _indexed_faces()
    indexed.add_metric([], faces)
    return [tasks, age, pending, indexed]


def _broker_families(settings: Settings) -> list[Metric]:
    """The broker's list lengths, and the workers' heartbeat mark, which lives beside them."""
    lengths = _broker_lengths()
    for queue, length in queue_lengths(settings).items():
        lengths.add_metric([queue.value], length)
    alive = _workers_alive()
    alive.add_metric([], 1 if worker_alive(settings) else 0)
    return [lengths, alive]


def _tasks() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_backlog_tasks",
        "Open detect tasks in the database: queued (waiting on the broker), held (batch items not yet "
        "published) or processing",
        labels=["queue", "state"],
    )


def _oldest_age() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_backlog_oldest_queued_age_seconds",
        "Age of the oldest task not started yet (queued or held); 0 when none waits",
        labels=["queue"],
    )


def _webhooks_pending() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_webhook_deliveries_pending", "Webhook events with an attempt due, scheduled or running"
    )


def _indexed_faces() -> GaugeMetricFamily:
    return GaugeMetricFamily("facequeue_collection_faces", "Faces indexed in every face collection (the index's size)")


def _broker_lengths() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_broker_queue_length",
        "Messages waiting in the broker's queue (published, not yet taken by a worker)",
        labels=["queue"],
    )


def _workers_alive() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_workers_alive",
        "1 when a worker's heartbeat was seen within FACEQUEUE_WORKER_ALIVE_AFTER, else 0 (the mark /readyz reads)",
    )


def _source_up() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "facequeue_metrics_source_up",
        "1 when the last backlog read from the source (database, broker) worked, else 0",
        labels=["source"],
    )
