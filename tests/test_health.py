"""/healthz, /readyz (database, broker, a live worker; bounded in time) and request ids, against real Postgres,
Redis and Celery workers."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from facequeue.core.settings import Settings
from facequeue.plumbing import worker_liveness
from tests.conftest import WorkerProcess
from tests.support import REDIS_URL, wait_until

pytestmark = pytest.mark.integration

ALIVE_AFTER = 2.0  # FACEQUEUE_WORKER_ALIVE_AFTER here: a stopped worker must count as gone within seconds
ALL_OK = {"status": "ok", "checks": {"database": "ok", "broker": "ok", "workers": "ok"}}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
REDIS_TIMEOUT = 0.5  # FACEQUEUE_REDIS_TIMEOUT in the hung-Redis test


def _no_worker(alive_after: float) -> str:
    return f"error: no worker heartbeat in the last {alive_after:g} s"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes TCP connections (the kernel's backlog) and never answers a byte: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def _wait_for_status(client: TestClient, status: int, within: float) -> float:
    """Seconds until /readyz answers `status`; fails after `within`."""
    started = time.monotonic()
    wait_until(
        lambda: client.get("/readyz").status_code == status, timeout=within, what=f"/readyz {status}", interval=0.1
    )
    return time.monotonic() - started


def test_readyz_needs_a_worker_that_beat_recently(start_worker: Callable[..., WorkerProcess]) -> None:
    with TestClient(create_app(Settings(worker_alive_after=ALIVE_AFTER))) as client:
        no_worker = client.get("/readyz")
        assert no_worker.status_code == 503
        assert no_worker.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "broker": "ok", "workers": _no_worker(ALIVE_AFTER)},
        }
        worker = start_worker(FACEQUEUE_WORKER_ALIVE_AFTER=str(ALIVE_AFTER))
        _wait_for_status(client, 200, within=5)  # the first beat follows worker_ready at once
        assert client.get("/readyz").json() == ALL_OK
        time.sleep(ALIVE_AFTER * 1.5)  # beats keep it ready past one TTL
        assert client.get("/readyz").json() == ALL_OK
        worker.stop()
        gone_after = _wait_for_status(client, 503, within=ALIVE_AFTER + 1)
        assert client.get("/readyz").json()["checks"] == {
            "database": "ok",
            "broker": "ok",
            "workers": _no_worker(ALIVE_AFTER),
        }
        assert client.get("/healthz").json() == {"status": "ok"}  # liveness does not depend on workers
    assert gone_after <= ALIVE_AFTER + 1


def test_readyz_is_bounded_when_redis_hangs(clean_state: None, silent_port: int) -> None:
    settings = Settings(broker_url=f"redis://127.0.0.1:{silent_port}/0", redis_timeout=REDIS_TIMEOUT)
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    # the reply's timeout, not only the connect's: the connection is accepted, the reply never comes
    assert response.json()["checks"] == {
        "database": "ok",
        "broker": "error: TimeoutError",
        "workers": "error: TimeoutError",
    }
    assert 2 * REDIS_TIMEOUT <= elapsed < 2 * REDIS_TIMEOUT + 1  # two Redis calls (PING, EXISTS), each bounded


def test_a_heartbeat_is_a_redis_key_that_expires(clean_state: None) -> None:
    settings = Settings(worker_alive_after=ALIVE_AFTER)
    assert not worker_liveness.worker_alive(settings)  # never beaten
    worker_liveness.record_beat(settings, "worker@host")
    assert worker_liveness.worker_alive(settings)
    key, client = worker_liveness.heartbeat_key(settings), redis.Redis.from_url(REDIS_URL)
    assert client.get(key) == b"worker@host" and 0 < client.pttl(key) <= ALIVE_AFTER * 1000


def test_request_ids_are_kept_when_safe_and_made_otherwise(api_client: TestClient) -> None:
    for kept in ("3f2c9a6e-1b7d-4c1e-9a55-0c1d2e3f4a5b", "lb.trace:42_A-b", "x" * 64):
        assert api_client.get("/healthz", headers={"X-Request-ID": kept}).headers["X-Request-ID"] == kept
    made = [api_client.get("/healthz").headers["X-Request-ID"]]
    for refused in ("x" * 65, "two words", 'quote"d', "new\\nline", ""):
        made.append(api_client.get("/healthz", headers={"X-Request-ID": refused}).headers["X-Request-ID"])
    assert all(GENERATED_ID.fullmatch(request_id) for request_id in made)
    assert len(set(made)) == len(made)


def test_each_request_logs_one_line_with_its_id(api_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    missing = api_client.get("/v1/detect/no-such-task", headers={"X-Request-ID": "trace-404"})
    assert missing.status_code == 404 and missing.headers["X-Request-ID"] == "trace-404"
    lines = [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    (request,) = [line for line in lines if line["event"] == "request"]
    assert {key: request[key] for key in ("request_id", "method", "route", "path", "status")} == {
        "request_id": "trace-404",
        "method": "GET",
        "route": "/v1/detect/{detect_task_id}",
        "path": "/v1/detect/no-such-task",
        "status": 404,
    }
    assert 0 < request["duration_ms"] < 5000


def test_refused_requests_get_an_id_and_a_line_too(clean_state: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with TestClient(create_app(Settings(auth="on"))) as client:
        refused = client.post("/v1/detect", json={"url": "https://example.com/a.jpg"})
    assert refused.status_code == 401 and GENERATED_ID.fullmatch(refused.headers["X-Request-ID"])
    (request,) = [r.msg for r in caplog.records if isinstance(r.msg, dict) and r.msg["event"] == "request"]
    assert (request["request_id"], request["route"], request["status"]) == (
        refused.headers["X-Request-ID"],
        "/v1/detect",
        401,
    )
