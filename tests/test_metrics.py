"""The metrics move with real work: a real Celery worker (with its exporter), Postgres, Redis, a fake upstream
face API and a webhook receiver on 127.0.0.1, and the API's /metrics, parsed as Prometheus parses them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from facequeue.cli.demo import astronaut_bgr
from facequeue.core.settings import Settings, get_settings
from facequeue.plumbing.exposition import MULTIPROC_ENV
from facequeue.plumbing.metrics import tenant_label
from tests.support import FINAL_STATUSES, free_port, start_server, wait_until
from tests.upstream.fake_upstreams import AKOOL_PATH, API_KEY

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset], float]
TASK_ROUTE = "/v1/detect/{detect_task_id}"


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A series' value; 0 for one not exported (yet), as Prometheus' `or vector(0)` would read it."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset, float]:
    return {labels: sample for (sample_name, labels), sample in samples.items() if sample_name == name}


def api_with_fresh_backlog(cache_seconds: float = 0.0):
    from api.app import create_app

    return create_app(get_settings().model_copy(update={"metrics_cache_seconds": cache_seconds}))


@pytest.fixture
def client(clean_state: None) -> Iterator[TestClient]:
    with TestClient(api_with_fresh_backlog()) as test_client:
        yield test_client


def wait_final(client: TestClient, task_id: str) -> tuple[dict, int]:
    """The final task, and how many GET /v1/detect/{id} it took."""
    polls = 0

    def poll() -> dict:
        nonlocal polls
        polls += 1
        return client.get(f"/v1/detect/{task_id}").json()

    task = wait_until(
        poll, until=lambda task: task["status"] in FINAL_STATUSES, timeout=60, what=f"task {task_id} final"
    )
    return task, polls


def wait_for(scrape: Callable[[], Samples], ready: Callable[[Samples], bool], what: str) -> Samples:
    return wait_until(scrape, until=ready, timeout=30, what=what, interval=0.2)


def test_counters_histograms_and_backlog_move_with_real_tasks(client, start_worker, media_server) -> None:
    jpeg = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
    media_server.expect_request("/face.jpg").respond_with_data(jpeg, content_type="image/jpeg")
    media_server.expect_request(AKOOL_PATH, method="POST").respond_with_data("down for maintenance", status=503)
    media_server.expect_request("/hook", method="POST").respond_with_data("ok")
    exporter_port = free_port()
    exporter = f"http://127.0.0.1:{exporter_port}/metrics"
    stale = _folder_of_a_killed_worker()
    worker_process = start_worker(
        FACEQUEUE_WORKER_METRICS_PORT=str(exporter_port),
        FACEQUEUE_WORKER_METRICS_ADDR="127.0.0.1",
        FACEQUEUE_UPSTREAM_URL=media_server.url_for(""),
        FACEQUEUE_UPSTREAM_API_KEY=API_KEY,
        FACEQUEUE_UPSTREAM_MAX_ATTEMPTS="1",
        FACEQUEUE_UPSTREAM_BREAKER_FAILURES="1",  # the failed upstream call opens the circuit
    )
    assert not stale.exists()  # cleaned at start
    before = parse(client.get("/metrics").text)
    image = media_server.url_for("/face.jpg")

    local = client.post("/v1/detect", json={"url": image}).json()["detect_task_id"]
    upstream = client.post("/v1/detect", json={"url": image, "detector": "upstream"}).json()["detect_task_id"]
    crun = client.post(
        "/api/v1/client/job/detect-face-image", json={"image_url": image, "callback_url": media_server.url_for("/hook")}
    ).json()["data"]["detect_task_id"]
    polls = 0
    outcomes = {}
    for task_id in (local, upstream, crun):
        task, taken = wait_final(client, task_id)
        polls += taken
        outcomes[task_id] = (task["status"], (task["error"] or {}).get("code"))
    assert outcomes == {
        local: ("succeeded", None),
        upstream: ("failed", "upstream_failed"),
        crun: ("succeeded", None),
    }

    def scrape_worker() -> Samples:
        return parse(httpx.get(exporter, timeout=5).text)

    worker = wait_for(
        scrape_worker,
        lambda samples: value(samples, "facequeue_webhook_attempts_total", outcome="success") == 1,
        "the worker's exporter counts the delivered webhook",
    )
    # The attempt is counted (and the receiver answered) before the worker commits its outcome: the API's
    # pending gauge reads 0 only once that commit landed.
    after = wait_for(
        lambda: parse(client.get("/metrics").text),
        lambda samples: value(samples, "facequeue_webhook_deliveries_pending") == 0,
        "the API's facequeue_webhook_deliveries_pending at 0 once the delivery committed",
    )

    # the API: submissions by API, requests by route template (never a raw path)
    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("facequeue_tasks_submitted_total", kind="image", api="native", tenant="all") == 2
    assert grew("facequeue_tasks_submitted_total", kind="image", api="crun", tenant="all") == 1
    assert grew("facequeue_http_requests_total", method="GET", route=TASK_ROUTE, status="200") == polls
    assert grew("facequeue_http_request_duration_seconds_count", method="GET", route=TASK_ROUTE) == polls
    assert grew("facequeue_http_requests_total", method="POST", route="/v1/detect", status="202") == 2
    crun_route = "/api/v1/client/job/detect-face-image"
    assert grew("facequeue_http_requests_total", method="POST", route=crun_route, status="200") == 1
    routes = {dict(labels)["route"] for labels in series(after, "facequeue_http_requests_total")}
    assert not any(task_id in route for route in routes for task_id in outcomes)

    # the backlog, from the database and the broker: all done
    backlog = series(after, "facequeue_backlog_tasks")
    assert len(backlog) == 9 and set(backlog.values()) == {0.0}  # 3 queues x (queued, held, processing)
    assert set(series(after, "facequeue_backlog_oldest_queued_age_seconds").values()) == {0.0}
    assert {
        dict(labels)["queue"]: length for labels, length in series(after, "facequeue_broker_queue_length").items()
    } == {
        "interactive": 0.0,
        "default": 0.0,
        "webhooks": 0.0,
        "batch": 0.0,
        "fetch": 0.0,
    }
    assert value(after, "facequeue_workers_alive") == 1
    assert value(after, "facequeue_metrics_source_up", source="database") == 1
    assert value(after, "facequeue_metrics_source_up", source="broker") == 1

    # the worker's exporter: what its pool process recorded (a fresh worker: counts from zero)
    finished = {
        tuple(dict(labels)[key] for key in ("status", "kind", "error_code", "api", "tenant")): count
        for labels, count in series(worker, "facequeue_tasks_finished_total").items()
    }
    assert finished == {
        ("succeeded", "image", "none", "native", "all"): 1,
        ("failed", "image", "upstream_failed", "native", "all"): 1,
        ("succeeded", "image", "none", "crun", "all"): 1,
    }
    for histogram in ("queue_wait", "processing", "end_to_end"):
        assert value(worker, f"facequeue_task_{histogram}_seconds_count", kind="image") == 3
        assert value(worker, f"facequeue_task_{histogram}_seconds_bucket", kind="image", le="+Inf") == 3
    assert value(worker, "facequeue_task_end_to_end_seconds_sum", kind="image") > 0
    # the upstream task failed on its only frame, so two frames were analysed
    assert value(worker, "facequeue_frames_processed_total", kind="image") == 2
    assert value(worker, "facequeue_detector_seconds_count") == 2
    assert value(worker, "facequeue_webhook_attempts_total", outcome="success") == 1
    assert value(worker, "facequeue_upstream_calls_total", upstream="akool", outcome="server_error") == 1
    assert value(worker, "facequeue_upstream_circuit_state", upstream="akool") == 2  # open

    # A pool process killed outright (no hook of its own runs) takes its circuit gauge with it; its counts stay.
    for pool_process in psutil.Process(worker_process.process.pid).children():
        pool_process.kill()
    without = wait_for(
        scrape_worker,
        lambda samples: not series(samples, "facequeue_upstream_circuit_state"),
        "the killed pool process's circuit gauge gone",
    )
    assert series(without, "facequeue_tasks_finished_total") == series(worker, "facequeue_tasks_finished_total")

    (folder,) = Path(tempfile.gettempdir()).glob(f"facequeue-worker-metrics-{worker_process.process.pid}-*")
    worker_process.stop()
    assert not folder.exists()  # removed when the worker exits


def _folder_of_a_killed_worker() -> Path:
    """A multiprocess folder as a worker killed with SIGKILL leaves it: its maker's pid is gone."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    folder = Path(tempfile.gettempdir()) / f"facequeue-worker-metrics-{gone.pid}-killed"
    folder.mkdir()
    (folder / f"counter_{gone.pid}.db").write_bytes(b"")
    return folder


def test_backlog_counts_held_batch_items_that_the_broker_does_not_see(client) -> None:
    """No worker runs: every task stays where submitting put it."""
    with TestClient(api_with_fresh_backlog(cache_seconds=60)) as cached_client:
        cached_before = parse(cached_client.get("/metrics").text)  # this read serves it for 60 s
        client.post("/v1/detect", json={"url": "http://127.0.0.1:9/single.jpg"})
        items = [{"url": f"http://127.0.0.1:9/{position}.jpg"} for position in range(6)]
        assert client.post("/v1/batches", json={"items": items}).status_code == 202
        fresh = parse(client.get("/metrics").text)
        cached_after = parse(cached_client.get("/metrics").text)

    in_flight = get_settings().tenant_max_in_flight
    assert value(fresh, "facequeue_backlog_tasks", queue="default", state="queued") == 1
    assert value(fresh, "facequeue_backlog_tasks", queue="batch", state="queued") == in_flight
    assert value(fresh, "facequeue_backlog_tasks", queue="batch", state="held") == 6 - in_flight
    # URLs go to the fetch stage's queue first; held batch items are on no queue
    assert value(fresh, "facequeue_broker_queue_length", queue="fetch") == 1 + in_flight
    assert value(fresh, "facequeue_broker_queue_length", queue="default") == 0
    assert value(fresh, "facequeue_broker_queue_length", queue="batch") == 0
    assert 0 < value(fresh, "facequeue_backlog_oldest_queued_age_seconds", queue="batch") < 60
    assert value(fresh, "facequeue_backlog_oldest_queued_age_seconds", queue="interactive") == 0
    for name in ("facequeue_backlog_tasks", "facequeue_broker_queue_length"):
        assert series(cached_after, name) == series(cached_before, name)


def test_api_processes_add_up_under_several_uvicorn_workers(database: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "facequeue", "api", "--host", "127.0.0.1", "--workers", "2", "--port"]
    base, api = start_server(lambda port: [*command, str(port)], tmp_path / "api.log", os.environ, new_session=True)
    try:
        folder = _metrics_folder_once_serving(api, base)
        requests = 0
        # new connections until both processes have answered (the kernel hands each to either)
        while requests < 200 and len(_pids_with_files(folder)) < 2:
            assert httpx.get(f"{base}/v1/detect/not-a-task", timeout=10).status_code == 404
            requests += 1
        # (uvicorn may have replaced a process that was slow to answer its health ping: its files stay)
        assert len(_pids_with_files(folder)) >= 2
        for _ in range(6):  # whichever process answers, it reports both processes' requests
            samples = parse(httpx.get(f"{base}/metrics", timeout=10).text)
            assert value(samples, "facequeue_http_requests_total", method="GET", route=TASK_ROUTE, status="404") == (
                requests
            )
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(timeout=30)
    assert not folder.exists()  # the API removed its metrics folder on exit


def _metrics_folder_once_serving(api: subprocess.Popen, base: str) -> Path:
    """The multiprocess folder the `api` command gave its uvicorn processes, once they answer."""

    def serving_folder() -> Path | None:
        assert api.poll() is None, "the API exited"
        try:
            # uvicorn's processes, not multiprocessing's resource tracker beside them
            children = [c for c in psutil.Process(api.pid).children() if "spawn_main" in " ".join(c.cmdline())]
            if len(children) == 2 and httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return Path(children[0].environ()[MULTIPROC_ENV])
        except (httpx.TransportError, psutil.NoSuchProcess):
            pass  # not listening yet, or a process uvicorn just replaced
        return None

    return wait_until(serving_folder, timeout=60, what="the API serving from two processes", interval=0.2)


def _pids_with_files(folder: Path) -> set[int]:
    return {int(path.stem.rsplit("_", 1)[1]) for path in folder.glob("*.db")}


def test_tenant_label_is_opt_in() -> None:
    assert tenant_label("tn_a", Settings(_env_file=None)) == "all"
    labelled = Settings(_env_file=None, metrics_tenant_labels=True)
    assert (tenant_label("tn_a", labelled), tenant_label(None, labelled)) == ("tn_a", "none")
