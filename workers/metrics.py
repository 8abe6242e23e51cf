"""The worker's own metric families, and the exporter its main process serves them (and the task metrics) on.

`facequeue worker` puts the worker in prometheus-client's multiprocess mode before it forks its pool:
each pool process writes to files in a private folder and the exporter, a small HTTP server in the
Celery main process (FACEQUEUE_WORKER_METRICS_PORT), adds every process's files up on each scrape.
`serve`'s worker writes to the folder of `serve`'s API instead and starts no exporter: the API's /metrics
shows its metrics, and a second target serving the same files would count everything twice.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from facequeue.core.settings import Settings
from facequeue.plumbing.exposition import multiprocess_dir, scrape_registry

log = structlog.get_logger(__name__)

# Seconds per frame: a 1024 px image takes about 20 ms locally (BENCHMARKS.md, (c)); 90-point landmarks,
# tiling or an upstream API take up to seconds.
DETECTOR_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

FRAMES_PROCESSED = Counter("facequeue_frames_processed", "Frames (images, sampled video frames) analysed", ["kind"])
DETECTOR_SECONDS = Histogram(
    "facequeue_detector_seconds",
    "Time to analyse one frame: detection, plus landmarks, crops and person embeddings when asked for",
    buckets=DETECTOR_BUCKETS,
)
WEBHOOK_ATTEMPTS = Counter(
    "facequeue_webhook_attempts",
    "Webhook delivery attempts by outcome: success (2xx), http_error (another status), no_response "
    "(connection, timeout), refused (never sent: SSRF guard, unusable secret)",
    ["outcome"],
)
UPSTREAM_CALLS = Counter(
    "facequeue_upstream_calls",
    "Calls to an upstream face API (all retries of one call count once), by outcome: success or the failure",
    ["upstream", "outcome"],
)
UPSTREAM_CIRCUIT_STATE = Gauge(
    "facequeue_upstream_circuit_state",
    "Circuit breaker of an upstream face API: 0 closed, 1 half-open, 2 open (the most open of the live "
    "pool processes; each keeps its own breaker)",
    ["upstream"],
    multiprocess_mode="livemax",
)
CIRCUIT_STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}  # pybreaker's state names


def start_exporter(settings: Settings) -> None:
    """Serve /metrics from the worker's main process (before it forks the pool); port 0: no exporter."""
    if not settings.worker_metrics_port:
        return
    if multiprocess_dir() is None:
        # Without the shared folder this process would only show its own (empty) values: say so, not serve.
        log.error("worker_metrics_off", reason="start the worker with `facequeue worker` for pool metrics")
        return
    try:
        start_http_server(settings.worker_metrics_port, settings.worker_metrics_addr, registry=scrape_registry())
    except OSError as error:  # the port is taken: the worker still works, without its exporter
        log.error("worker_metrics_off", port=settings.worker_metrics_port, reason=str(error))
        return
    log.info("worker_metrics", addr=settings.worker_metrics_addr, port=settings.worker_metrics_port)
