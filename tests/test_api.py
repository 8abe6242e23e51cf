"""Native v1 API against real Postgres and Redis, without workers: validation, idempotency, listing, cancel."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from facequeue.cli.demo import astronaut_bgr
from tests.support import REDIS_URL, queue_key, wait_until

pytestmark = pytest.mark.integration


def _png_b64() -> str:
    import cv2

    return base64.b64encode(cv2.imencode(".png", astronaut_bgr())[1].tobytes()).decode()


def _queued_messages(queue: str = "default") -> list[dict]:
    return [json.loads(raw) for raw in redis.Redis.from_url(REDIS_URL).lrange(queue_key(queue), 0, -1)]


def test_submit_answers_202_and_publishes_one_message(api_client) -> None:
    response = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and set(body) == {"detect_task_id", "status"}
    assert len(body["detect_task_id"]) >= 22
    # a URL goes to the fetch pool first (it sends the task to "default" once downloaded), with no Celery time
    # limits: threads cannot be stopped, its downloads keep a deadline of their own
    (message,) = _queued_messages("fetch")
    assert message["headers"]["task"] == "facequeue.fetch" and message["headers"]["timelimit"] == [None, None]
    assert message["headers"]["argsrepr"] == repr([body["detect_task_id"]])
    assert _queued_messages() == []
    task = api_client.get(f"/v1/detect/{body['detect_task_id']}").json()
    assert task["status"] == "queued" and task["kind"] == "image" and task["result"] is None and task["error"] is None
    assert task["progress"] == {"done": 0, "total": 0}
    # an upload is ready for a CPU slot at once (its kind is not known yet: the video time limits)
    upload_id = api_client.post("/v1/detect", json={"img": _png_b64()}).json()["detect_task_id"]
    (message,) = _queued_messages()
    assert message["headers"]["task"] == "facequeue.detect" and message["headers"]["timelimit"] == [960.0, 900.0]
    assert message["headers"]["argsrepr"] == repr([upload_id])


def test_failed_publish_leaves_the_task_for_the_reaper(api_client, monkeypatch) -> None:
    """One commit stores the task already marked published; when the broker then refuses the message
    the mark is taken back, so the reaper's next pass publishes it. (The outage is simulated: the
    broker here is a real Redis that stays up.)"""
    from kombu.exceptions import OperationalError

    from db.models import DetectTask
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle import publish, reaper
    from facequeue.plumbing.sessions import session_scope

    def broker_down(*_args, **_kwargs) -> None:
        raise OperationalError("Error 111 connecting to broker: Connection refused")

    with monkeypatch.context() as outage:  # the submit's publish fails; the reaper's (same function) succeeds
        outage.setattr(publish, "publish_detect", broker_down)
        task_id = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}).json()["detect_task_id"]
    assert _queued_messages() == []
    with session_scope() as session:
        assert session.get(DetectTask, task_id).published_at is None
    monkeypatch.setattr(reaper, "UNPUBLISHED_GRACE_SECONDS", 0.0)
    with session_scope() as session:
        assert reaper.reap(session, get_settings()).republished == 1
    assert [message["headers"]["argsrepr"] for message in _queued_messages("fetch")] == [repr([task_id])]
    with session_scope() as session:
        assert session.get(DetectTask, task_id).published_at is not None


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "Either 'url' or 'img' parameter must be provided"),
        ({"url": "", "img": ""}, 422, "Either 'url' or 'img' parameter must be provided"),
        ({"url": "not a url"}, 422, "Invalid URL format"),
        ({"url": "ftp://example.com/a.jpg"}, 422, "Invalid URL format"),
        ({"img": "@@@not-base64@@@"}, 422, "img is not valid base64"),
        ({"img": "aGVsbG8=é"}, 422, "img is not valid base64"),
        (
            {"url": "https://example.com/a.jpg", "num_frames": 0},
            422,
            "num_frames: Input should be greater than or equal to 1",
        ),
        (
            {"url": "https://example.com/a.jpg", "num_frames": 101},
            422,
            "num_frames: Input should be less than or equal to 100",
        ),
        (
            {"url": "https://example.com/a.jpg", "media_type": "audio"},
            422,
            "media_type: Input should be 'auto', 'image' or 'video'",
        ),
        ({"url": "https://example.com/a.jpg", "surprise": 1}, 422, "surprise: Extra inputs are not permitted"),
    ],
)
def test_bad_submissions_get_precise_errors(api_client, body: dict, status: int, message: str) -> None:
    response = api_client.post("/v1/detect", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"].startswith(message)
    assert _queued_messages() == []


def test_malformed_json_is_a_clear_422(api_client) -> None:
    response = api_client.post("/v1/detect", content=b'{"url": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "JSON" in response.json()["error"]["message"]


def test_url_wins_over_img(api_client) -> None:
    task_id = api_client.post("/v1/detect", json={"url": "https://example.com/v.mp4", "img": _png_b64()}).json()[
        "detect_task_id"
    ]
    assert api_client.get(f"/v1/detect/{task_id}").json()["kind"] == "video"


def test_data_uri_upload_is_stored_outside_the_row(api_client) -> None:
    from sqlalchemy import select

    from db.models import DetectTask
    from facequeue.core.settings import get_settings
    from facequeue.core.storage import get_storage
    from facequeue.plumbing.sessions import session_scope

    data = _png_b64()
    wrapped = "\r\n".join(data[i : i + 76] for i in range(0, len(data), 76))  # MIME-style line breaks
    task_id = api_client.post("/v1/detect", json={"img": f"data:image/png;base64,{wrapped}"}).json()["detect_task_id"]
    with session_scope() as session:
        task = session.scalar(select(DetectTask).where(DetectTask.id == task_id))
        assert task.source_url is None and task.upload_key
        assert data not in json.dumps(task.params)
        stored = get_storage(get_settings()).path(task.upload_key).read_bytes()
    assert stored == base64.b64decode(data)


def test_oversized_body_is_refused_before_it_is_read(api_client, monkeypatch) -> None:
    from facequeue.core.settings import get_settings

    limit = get_settings().max_upload_bytes
    huge = "A" * (limit * 4 // 3 + 200 * 1024)
    response = api_client.post("/v1/detect", json={"img": huge})
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]


def test_idempotency_key_replays_and_conflicts(api_client) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}, headers=headers)
    again = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["detect_task_id"] == again.json()["detect_task_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(_queued_messages("fetch")) == 1  # the replay published nothing
    conflict = api_client.post("/v1/detect", json={"url": "https://example.com/b.jpg"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["message"] == "Idempotency-Key was already used with a different request body"
    other_key = api_client.post(
        "/v1/detect", json={"url": "https://example.com/a.jpg"}, headers={"Idempotency-Key": "x"}
    )
    assert other_key.json()["detect_task_id"] != first.json()["detect_task_id"]


def test_unknown_task_is_404(api_client) -> None:
    response = api_client.get("/v1/detect/nope")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "detect task nope not found",
        "field": "detect_task_id",
    }
    assert api_client.delete("/v1/detect/nope").status_code == 404


def test_reads_hand_back_every_connection(api_client) -> None:
    """A read leaves its transaction open; the request's session is closed off the event loop afterwards
    (api/deps.py), and more reads than the pool holds (10 + 20 overflow) neither wait nor keep a connection."""
    from facequeue.plumbing.sessions import get_engine

    task_id = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}).json()["detect_task_id"]
    for _ in range(40):
        assert api_client.get(f"/v1/detect/{task_id}").status_code == 200
        assert api_client.get("/v1/detect/nope").status_code == 404
    pool = get_engine().pool
    wait_until(pool.checkedout, until=lambda count: count == 0, timeout=10, what="connections handed back")


def test_list_pages_with_cursor_and_filters_by_status(api_client) -> None:
    ids = [
        api_client.post("/v1/detect", json={"url": f"https://example.com/{i}.jpg"}).json()["detect_task_id"]
        for i in range(5)
    ]
    api_client.delete(f"/v1/detect/{ids[0]}")
    seen, cursor = [], None
    while True:
        page = api_client.get("/v1/detect", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["detect_task_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    canceled = api_client.get("/v1/detect", params={"status": "canceled"}).json()["items"]
    assert [item["detect_task_id"] for item in canceled] == [ids[0]]
    assert api_client.get("/v1/detect", params={"status": "bogus"}).status_code == 422
    assert api_client.get("/v1/detect", params={"cursor": "!!"}).json()["error"]["message"] == "cursor is malformed"


def test_list_names_each_tasks_source_and_counts_its_faces(api_client) -> None:
    from db.models import DetectTask
    from facequeue.plumbing.sessions import session_scope

    def submit(body: dict) -> str:
        return api_client.post("/v1/detect", json=body).json()["detect_task_id"]

    by_url = submit({"url": "https://example.com/photos/team%20photo.jpg?size=large"})
    bare_host = submit({"url": "https://example.com/"})
    uploaded = submit({"img": _png_b64()})
    batch = api_client.post("/v1/batches", json={"items": [{"url": "https://example.com/x.jpg", "name": "trip/a.jpg"}]})
    with session_scope() as session:  # a finished result's frames, as a worker stores them
        session.get(DetectTask, uploaded).result = {
            "faces_obj": {"0": {"region": [[0, 0, 9, 9]] * 2}, "5": {"region": []}}
        }
    items = {item["detect_task_id"]: item for item in api_client.get("/v1/detect").json()["items"]}
    shown = {task_id: (item["source"], item["faces"]) for task_id, item in items.items()}
    assert shown.pop(by_url) == ("team photo.jpg", None)
    assert shown.pop(bare_host) == ("example.com", None)
    assert shown.pop(uploaded) == (None, 2)
    assert batch.status_code == 202 and list(shown.values()) == [("trip/a.jpg", None)]


def test_cancel_queued_task(api_client) -> None:
    task_id = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}).json()["detect_task_id"]
    canceled = api_client.delete(f"/v1/detect/{task_id}").json()
    assert canceled["status"] == "canceled" and canceled["finished_at"] is not None


def test_health_and_readiness(api_client) -> None:
    assert api_client.get("/healthz").json() == {"status": "ok"}
    ready = api_client.get("/readyz")  # no worker runs here (tests/test_health.py starts one)
    assert ready.status_code == 503 and ready.json()["checks"] == {
        "database": "ok",
        "broker": "ok",
        "workers": "error: no worker heartbeat in the last 30 s",
    }


def test_openapi_docs_are_served(api_client) -> None:
    assert api_client.get("/docs").status_code == 200
    assert "/v1/detect" in api_client.get("/openapi.json").json()["paths"]
