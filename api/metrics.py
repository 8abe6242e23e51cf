"""The API's metrics: HTTP requests by route template, and GET /metrics (Prometheus text exposition).

/metrics serves this process's families (every API process's under `facequeue api --workers N`,
which shares a multiprocess folder; under `facequeue serve` those of the worker it starts too, tasks finished
included, since its processes write to the API's folder), the task metrics the lifecycle records here
(submitted, finished by cancels and the reaper), and the backlog read from the database and the broker.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator.metrics import Info

from facequeue.core.settings import Settings
from facequeue.plumbing.backlog_gauges import BacklogCollector
from facequeue.plumbing.exposition import scrape_registry

# Seconds: a poll answers in a few ms; the synchronous compat calls wait up to FACEQUEUE_SYNC_TIMEOUT (60 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Any other method a client sends is counted as "other", so a label value can't be made up by a client.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "none"  # the instrumentator's name for a path no route matched (never the raw path)

HTTP_REQUESTS = Counter(
    "facequeue_http_requests",
    f"HTTP requests by method, route template ('{UNMATCHED_ROUTE}': no route matched) and status code",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "facequeue_http_request_duration_seconds",
    "HTTP request handling time, to the end of the response body, by method and route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain `def`: the backlog read is blocking I/O, so FastAPI runs it in its thread pool.
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


def instrument(app: FastAPI, settings: Settings) -> None:
    """Count every request (outermost, so refusals by other middleware count too) and serve /metrics."""
    Instrumentator(should_group_status_codes=False, should_group_untemplated=True).add(_record).instrument(app)
    app.state.metrics_registry = scrape_registry(BacklogCollector(settings))
    app.include_router(router)


def _record(info: Info) -> None:
    method = info.method if info.method in KNOWN_METHODS else "other"
    HTTP_REQUESTS.labels(method, info.modified_handler, info.modified_status).inc()
    HTTP_REQUEST_DURATION.labels(method, info.modified_handler).observe(info.modified_duration)
