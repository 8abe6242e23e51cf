"""Batches end to end: bulk creation, fair dispatch, status, ordered results, cancel, the batch webhook."""

from __future__ import annotations

import json
import threading
import time

import cv2
import pytest
import redis
from werkzeug import Request, Response

from facequeue.cli.demo import astronaut_bgr
from tests.support import REDIS_URL, queue_key, wait_until
from tests.test_tenants import balance, bearer, make_client, new_key

pytestmark = pytest.mark.integration


def jpeg() -> bytes:
    return cv2.imencode(".jpg", cv2.resize(astronaut_bgr(), (256, 256)))[1].tobytes()


def wait_batch(client, batch_id: str, headers: dict | None = None, timeout: float = 90) -> dict:
    return wait_until(
        lambda: client.get(f"/v1/batches/{batch_id}", headers=headers or {}).json(),
        until=lambda view: view["status"] != "running",
        timeout=timeout,
        what=f"batch {batch_id} done",
        interval=0.2,
    )


def test_thousand_items_are_stored_and_only_the_cap_is_published(api_client) -> None:
    items = [{"url": f"https://example.com/{i}.jpg"} for i in range(1000)]
    response = api_client.post("/v1/batches", json={"items": items, "defaults": {"num_frames": 3}})
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["total"] == 1000
    view = api_client.get(f"/v1/batches/{accepted['batch_id']}").json()
    assert view["counts"]["queued"] == 1000 and view["status"] == "running" and view["progress"] == 0.0
    from facequeue.core.settings import get_settings

    broker = redis.Redis.from_url(REDIS_URL)
    published = broker.llen(queue_key("fetch")) + broker.llen(queue_key("batch"))  # URL items download first
    assert published == get_settings().tenant_max_in_flight  # the rest wait, held, for the fair dispatcher


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": "nope"}, "items must be a list of detection requests"),
        ({"items": []}, "items must not be empty"),
        ({"items": [{"url": "https://e.com/a.jpg"}, {"url": "nope"}]}, "items[1]: Invalid URL format"),
        ({"items": [{"url": "https://e.com/a.jpg", "num_frames": 0}]}, "items[0].num_frames: Input should be"),
        ({"items": [7]}, "items[0] must be an object"),
        ({"items": [{"url": "https://e.com/a.jpg", "name": "n" * 1025}]}, "items[0].name: "),  # 1024 at most
    ],
)
def test_bad_batches_are_refused_whole(api_client, body: dict, message: str) -> None:
    response = api_client.post("/v1/batches", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(message)
    assert api_client.get("/v1/detect").json()["items"] == []  # nothing of a refused batch is kept


def test_too_many_items_points_to_jsonl(api_client, monkeypatch) -> None:
    from facequeue.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "max_batch_items", 3)
    response = api_client.post("/v1/batches", json={"items": [{"url": "https://e.com/a.jpg"}] * 4})
    assert response.status_code == 422 and "upload larger manifests as JSONL" in response.json()["error"]["message"]


def test_jsonl_manifest_is_streamed(api_client) -> None:
    lines = "\n".join(json.dumps({"url": f"https://example.com/{i}.mp4"}) for i in range(2500)) + "\n"
    response = api_client.post(
        "/v1/batches",
        content=lines.encode(),
        headers={"content-type": "application/x-ndjson"},
        params={"defaults": json.dumps({"num_frames": 2})},
    )
    assert response.status_code == 202 and response.json()["total"] == 2500
    bad = api_client.post(
        "/v1/batches",
        content=b'{"url": "https://e.com/a.jpg"}\n{oops\n',
        headers={"content-type": "application/x-ndjson"},
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["message"].startswith("line 2 of the manifest is not valid JSON")


def test_batch_runs_streams_ordered_results_and_fires_one_webhook(api_client, worker, media_server) -> None:
    received: list[dict] = []
    done = threading.Event()

    def receiver(request: Request) -> Response:
        received.append(json.loads(request.get_data()))
        done.set()
        return Response("ok")

    media_server.expect_request("/hook", method="POST").respond_with_handler(receiver)
    media_server.expect_request("/ok.jpg").respond_with_data(jpeg(), content_type="image/jpeg")
    media_server.expect_request("/missing.jpg").respond_with_data("no", status=404)
    urls = [media_server.url_for("/ok.jpg" if i % 3 else "/missing.jpg") for i in range(9)]
    names = [f"shot {i}" if i % 2 else None for i in range(9)]  # a name is optional, and echoed as given
    items = [{"url": url, "name": name} for url, name in zip(urls, names, strict=True)]
    body = {"items": items, "callback_url": media_server.url_for("/hook")}
    batch_id = api_client.post("/v1/batches", json=body).json()["batch_id"]
    view = wait_batch(api_client, batch_id)
    assert view["status"] == "completed" and view["progress"] == 1.0 and view["eta_seconds"] is None
    assert view["counts"]["succeeded"] == 6 and view["counts"]["failed"] == 3
    assert [(failure["position"], failure["name"]) for failure in view["failures"]] == [
        (0, None),
        (3, "shot 3"),
        (6, None),
    ]
    assert view["failures"][0]["error"]["code"] == "download_failed"
    lines = [json.loads(line) for line in api_client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert [(line["position"], line["name"]) for line in lines] == list(enumerate(names))
    assert [line["status"] for line in lines] == ["failed" if i % 3 == 0 else "succeeded" for i in range(9)]
    assert all(len(line["result"]["faces_obj"]["0"]["region"]) == 1 for line in lines if line["status"] == "succeeded")
    assert done.wait(20)
    time.sleep(1)  # the behaviour under test: no second event arrives within this
    assert len(received) == 1
    event = received[0]
    assert event["type"] == "batch.completed" and event["data"]["batch_id"] == batch_id
    assert event["data"]["counts"]["succeeded"] == 6 and event["data"]["results_url"].endswith(
        f"/v1/batches/{batch_id}/results"
    )


def test_cancel_batch_refunds_and_keeps_finished_results(clean_state) -> None:
    key = new_key("batcher", credits=100)
    with make_client() as client:
        items = [{"url": f"https://e.com/{i}.jpg"} for i in range(30)]
        batch_id = client.post("/v1/batches", json={"items": items}, headers=bearer(key)).json()["batch_id"]
        assert balance("batcher") == 70
        view = client.delete(f"/v1/batches/{batch_id}", headers=bearer(key)).json()
        assert view["status"] == "canceled" and view["counts"]["canceled"] == 30
        assert balance("batcher") == 100
        other = new_key("someone-else")
        assert client.get(f"/v1/batches/{batch_id}", headers=bearer(other)).status_code == 404
        assert client.get(f"/v1/batches/{batch_id}/results", headers=bearer(other)).status_code == 404
        assert client.delete(f"/v1/batches/{batch_id}", headers=bearer(other)).status_code == 404
        poor = new_key("poor-batcher", credits=5)
        refused = client.post("/v1/batches", json={"items": items}, headers=bearer(poor))
        assert refused.status_code == 402 and balance("poor-batcher") == 5


def test_fair_dispatch_between_tenants(clean_state, start_worker, media_server) -> None:
    """One worker process; tenant A's 40 items are ahead of tenant B's 6 items and B's single image."""
    from sqlalchemy import select

    from db.models import DetectTask
    from facequeue.plumbing.sessions import session_scope

    start_worker()
    media_server.expect_request("/face.jpg").respond_with_data(jpeg(), content_type="image/jpeg")
    url = media_server.url_for("/face.jpg")
    alice, bob = new_key("alice", rate="1000/second"), new_key("bob", rate="1000/second")
    with make_client() as client:
        a_batch = client.post("/v1/batches", json={"items": [{"url": url}] * 40}, headers=bearer(alice)).json()
        b_batch = client.post("/v1/batches", json={"items": [{"url": url}] * 6}, headers=bearer(bob)).json()
        single = client.post("/v1/detect", json={"url": url}, headers=bearer(bob)).json()["detect_task_id"]
        wait_batch(client, a_batch["batch_id"], bearer(alice))
        wait_batch(client, b_batch["batch_id"], bearer(bob))
    with session_scope() as session:
        tasks = session.scalars(select(DetectTask).order_by(DetectTask.started_at)).all()
    order = [(task.id == single, task.batch_id) for task in tasks]
    single_at = next(i for i, (is_single, _) in enumerate(order) if is_single)
    a_before_single = sum(1 for _, batch in order[:single_at] if batch == a_batch["batch_id"])
    last_b = max(i for i, (_, batch) in enumerate(order) if batch == b_batch["batch_id"])
    a_before_last_b = sum(1 for _, batch in order[:last_b] if batch == a_batch["batch_id"])
    # Without fairness the single image would wait behind ~40 queued items and B's batch behind all of A's.
    assert a_before_single <= 2, order  # at most the running task and one prefetched message
    assert a_before_last_b <= 2 * 6 + 4, order  # B's items interleave with A's from the start


def test_two_items_finishing_at_once_finish_their_batch(clean_state) -> None:
    """Each item's final status and the batch check commit together; the second check waits for the first
    commit, so the batch is finished however the two interleave."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from db.batches import finish_if_complete
    from db.models import Batch, DetectTask
    from facequeue.core.enums import TaskStatus
    from facequeue.plumbing.sessions import session_scope

    with session_scope() as session:
        batch = Batch(total=2)
        session.add(batch)
        session.flush()
        items = [DetectTask(batch_id=batch.id, status=TaskStatus.PROCESSING, params={}) for _ in range(2)]
        session.add_all(items)
        session.flush()
        batch_id, item_ids = batch.id, [item.id for item in items]

    def finish(session, item_id: str):
        session.get(DetectTask, item_id).status = TaskStatus.SUCCEEDED
        session.flush()
        return finish_if_complete(session, batch_id)

    with session_scope() as first, session_scope() as second, ThreadPoolExecutor(1) as pool:
        assert finish(first, item_ids[0]) is None  # the other item is still open
        second_pid = second.execute(text("SELECT pg_backend_pid()")).scalar()
        checked = pool.submit(finish, second, item_ids[1])
        waiting = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"
        wait_until(
            lambda: checked.done() or first.execute(text(waiting), {"pid": second_pid}).scalar() == "Lock",
            timeout=30,
            what="the second check done, or waiting for the batch row",
        )
        first.commit()
        assert checked.result(timeout=30) is not None and checked.result().finished_at is not None
