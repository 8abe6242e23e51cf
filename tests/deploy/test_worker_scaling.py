"""What the worker manifests rely on, run for real: the KEDA query counts every task a worker still has to run
(batch items held in the database included), and SIGTERM lets a running task finish before the worker exits."""

from __future__ import annotations

import signal
import threading
import time

import cv2
import psycopg
import pytest
import redis
import yaml
from sqlalchemy import text
from werkzeug import Response

from facequeue.cli.demo import astronaut_bgr
from tests.conftest import REPO_ROOT, TEST_DB_DSN
from tests.support import REDIS_URL, queue_key, wait_for_final, wait_until

pytestmark = pytest.mark.integration

BATCH_ITEMS = 10


def scaler_query() -> str:
    documents = yaml.safe_load_all((REPO_ROOT / "deploy" / "k8s" / "base" / "autoscaling.yaml").read_text())
    (scaled,) = [document for document in documents if document["kind"] == "ScaledObject"]
    return scaled["spec"]["triggers"][0]["metadata"]["query"]


def test_the_scaler_query_counts_held_batch_items_that_the_broker_never_saw(api_client) -> None:
    from facequeue.core.settings import get_settings
    from facequeue.plumbing.sessions import get_engine

    single = api_client.post("/v1/detect", json={"url": "https://example.com/one.jpg"}).json()["detect_task_id"]
    items = [{"url": f"https://example.com/{n}.jpg"} for n in range(BATCH_ITEMS)]
    assert api_client.post("/v1/batches", json={"items": items}).status_code == 202
    cap = get_settings().tenant_max_in_flight
    broker = redis.Redis.from_url(REDIS_URL)
    # URL tasks go to the fetch stage first, the single one and the published batch items alike
    assert [broker.llen(queue_key(name)) for name in ("fetch", "default", "batch")] == [1 + cap, 0, 0]

    # what workers would do: one task runs, two published batch items end
    with get_engine().begin() as connection:
        connection.execute(text("UPDATE detect_tasks SET status = 'processing' WHERE id = :id"), {"id": single})
        finished = connection.execute(
            text("SELECT id FROM detect_tasks WHERE batch_id IS NOT NULL AND published_at IS NOT NULL LIMIT 2")
        ).scalars()
        for status, task_id in zip(("succeeded", "failed"), list(finished), strict=True):
            connection.execute(text("UPDATE detect_tasks SET status = :s WHERE id = :id"), {"s": status, "id": task_id})

    # KEDA's postgresql scaler runs the query as written, over a libpq connection
    with psycopg.connect(TEST_DB_DSN, connect_timeout=5) as connection:
        (backlog,) = connection.execute(scaler_query()).fetchone()
        (held,) = connection.execute("SELECT count(*) FROM detect_tasks WHERE published_at IS NULL").fetchone()
    assert backlog == 1 + BATCH_ITEMS - 2  # the running task and every queued item, held or published
    assert held == BATCH_ITEMS - cap  # never on the broker: a scaler on the list lengths would miss them


def _held_media(data: bytes, release: threading.Event):
    def handler(_request):
        def body():
            yield data[:100]
            release.wait(timeout=60)
            yield data[100:]

        return Response(body(), content_type="image/jpeg", headers={"Content-Length": str(len(data))})

    return handler


def test_sigterm_lets_the_running_task_finish_before_the_worker_exits(api_client, start_worker, media_server) -> None:
    release = threading.Event()
    jpeg = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
    media_server.expect_request("/held.jpg").respond_with_handler(_held_media(jpeg, release))
    worker = start_worker("draining")
    task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/held.jpg")}).json()["detect_task_id"]
    wait_until(
        lambda: api_client.get(f"/v1/detect/{task_id}").json()["status"] == "processing",
        timeout=30,
        what="the task started",
    )

    # the Celery main process alone, as the kubelet (and the preStop hook) signal PID 1
    worker.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "Warm shutdown" in worker.log(), timeout=30, what="the worker took the signal")
    time.sleep(1.5)  # what a worker that did not drain would need to exit: it must not
    assert worker.process.poll() is None  # draining: the running task holds it
    assert api_client.get(f"/v1/detect/{task_id}").json()["status"] == "processing"

    release.set()
    assert worker.process.wait(timeout=60) == 0
    assert "Warm shutdown" in worker.log()
    # The draining worker's fetch stage finished the download and handed the task on, stored: the next
    # worker detects it on the same attempt, downloading nothing again.
    start_worker("next")
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded" and task["attempts"] == 1
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 1
