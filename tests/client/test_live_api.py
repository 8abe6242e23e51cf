"""The client against the real API over HTTP: uvicorn, Postgres, Redis and real Celery workers."""

from __future__ import annotations

import time

import httpx
import pytest
from facequeue_client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidInput,
    NotFound,
    PollPolicy,
    Unauthorized,
    verify_webhook,
)
from pytest_httpserver import HTTPServer
from sqlalchemy import text
from werkzeug import Request, Response

from tests.client.conftest import b64
from tests.support import wait_until
from tests.test_tenants import new_key

pytestmark = pytest.mark.integration


def most_polls(seconds: float) -> int:
    """The polls a polite `wait` makes in `seconds`: one at once, then one after each growing pause."""
    policy = PollPolicy()
    polls, pause, elapsed = 1, policy.first, 0.0
    while elapsed < seconds:
        elapsed += pause
        polls += 1
        pause = min(pause * policy.growth, policy.longest)
    return polls


def test_detect_a_photo_file_and_wait_for_its_face(client: Client, worker, face_jpeg: bytes, tmp_path) -> None:
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(face_jpeg)
    accepted = client.detect(photo)
    assert accepted.status == "queued" and accepted.result is None
    changes = []
    before, started = client.request_count, time.monotonic()
    done = client.wait(accepted, timeout=90, on_progress=changes.append)
    polls = client.request_count - before
    assert done.status == "succeeded" and done.kind == "image" and done.error is None
    frame = done.result.faces_obj["0"]
    assert len(frame.region) == 1 and len(frame.landmarks[0]) == 6 and frame.frame_time is None
    assert (done.result.media.width, done.result.media.height) == (512, 512)
    assert changes[-1] == done and len({t.progress_marker for t in changes}) == len(changes)
    assert 1 <= polls <= most_polls(time.monotonic() - started)


def test_detect_by_url_and_by_bytes(client: Client, worker, media_server, face_jpeg: bytes) -> None:
    media_server.expect_request("/astronaut.jpg").respond_with_data(face_jpeg, content_type="image/jpeg")
    by_url = client.detect(media_server.url_for("/astronaut.jpg"), single_face=True)
    by_bytes = client.detect(face_jpeg, num_frames=1)
    for accepted in (by_url, by_bytes):
        done = client.wait(accepted.detect_task_id, timeout=90)
        assert done.status == "succeeded" and len(done.result.faces_obj["0"].region) == 1


def test_list_follows_the_cursors_lazily(client: Client) -> None:
    ids = [client.detect(f"https://example.com/{n}.jpg").detect_task_id for n in range(7)]  # no worker: all queued
    before = client.request_count
    pages = client.list(page_size=3)
    assert next(pages).detect_task_id == ids[-1] and client.request_count == before + 1
    listed = [ids[-1], *(summary.detect_task_id for summary in pages)]
    assert listed == ids[::-1] and client.request_count == before + 3  # pages of 3, 3 and 1
    assert [summary.status for summary in client.list("queued", page_size=500)] == ["queued"] * 7
    assert list(client.list("succeeded")) == []


def test_cancel_and_delete_a_queued_task(client: Client) -> None:
    first, second = (client.detect(f"https://example.com/{n}.jpg") for n in range(2))
    canceled = client.cancel(first)
    assert canceled.status == "canceled" and canceled.finished_at is not None
    assert client.cancel(first.detect_task_id).status == "canceled"  # already final: left as it is
    before = client.request_count
    assert client.delete(second).status == "canceled"
    assert client.request_count == before + 2  # the first DELETE cancels, the second deletes its data
    assert [summary.status for summary in client.list()] == ["canceled", "canceled"]


def test_cancel_keeps_a_result_that_delete_removes(client: Client, worker, face_jpeg: bytes) -> None:
    done = client.wait(client.detect(face_jpeg), timeout=90)
    assert done.status == "succeeded"
    assert client.cancel(done).result == done.result
    deleted = client.delete(done)
    assert (deleted.status, deleted.result) == ("succeeded", None)
    assert client.get(done).result is None


def test_batch_as_json_with_status_and_results(client: Client, worker, media_server, face_jpeg: bytes) -> None:
    media_server.expect_request("/astronaut.jpg").respond_with_data(face_jpeg, content_type="image/jpeg")
    items = [
        {"img": b64(face_jpeg)},
        {"url": media_server.url_for("/astronaut.jpg")},
        {"url": media_server.url_for("/gone.jpg")},
    ]
    accepted = client.submit_batch(items, defaults={"single_face": True})
    assert accepted.total == 3
    reported = []
    status = client.wait_batch(accepted.batch_id, timeout=120, on_progress=reported.append)
    assert (status.status, status.counts["succeeded"], status.counts["failed"], status.progress) == (
        "completed",
        2,
        1,
        1.0,
    )
    assert [(failure.position, failure.error["code"]) for failure in status.failures] == [(2, "download_failed")]
    assert reported[-1] == status
    results = list(client.batch_results(accepted.batch_id))
    assert [(line.position, line.status) for line in results] == [(0, "succeeded"), (1, "succeeded"), (2, "failed")]
    assert [len(line.result.faces_obj["0"].region) for line in results[:2]] == [1, 1]
    assert results[2].result is None and results[2].error.code == "download_failed"


def test_batch_streamed_as_jsonl(client: Client, worker, face_jpeg: bytes) -> None:
    handed_out = []

    def manifest():
        for n in range(3):
            handed_out.append(n)
            yield {"img": b64(face_jpeg), "num_frames": 1}

    accepted = client.stream_batch(manifest(), defaults={"single_face": True})
    assert accepted.total == 3 and handed_out == [0, 1, 2]
    assert client.wait_batch(accepted.batch_id, timeout=120).counts["succeeded"] == 3
    results = list(client.batch_results(accepted.batch_id))
    assert [(line.position, len(line.result.faces_obj["0"].region)) for line in results] == [(0, 1), (1, 1), (2, 1)]


def test_cancel_batch(client: Client) -> None:
    accepted = client.submit_batch([{"url": f"https://example.com/{n}.jpg"} for n in range(3)])
    status = client.cancel_batch(accepted.batch_id)
    assert (status.status, status.counts["canceled"]) == ("canceled", 3)


def test_errors_are_typed_by_their_code(client: Client, live_api: str, monkeypatch) -> None:
    monkeypatch.delenv("FACEQUEUE_API_KEY", raising=False)
    with Client(live_api, "fq_not_a_key") as stranger, pytest.raises(Unauthorized) as raised:
        stranger.get("tk_1")
    assert (raised.value.status, raised.value.code, raised.value.message) == (401, "unauthorized", "Invalid API key")
    with Client(live_api) as keyless, pytest.raises(Unauthorized, match="Missing API key"):
        next(keyless.list())
    with pytest.raises(NotFound) as raised:
        client.get("no-such-task")
    assert (raised.value.status, raised.value.code) == (404, "not_found")
    with pytest.raises(NotFound) as raised:
        client.batch_status("bt_none")
    assert (raised.value.field, raised.value.message) == ("batch_id", "batch bt_none not found")
    with pytest.raises(InvalidInput) as raised:
        client.detect("https://example.com/a.jpg", num_frames=0)
    assert (raised.value.status, raised.value.code, raised.value.field, raised.value.message) == (
        422,
        "validation_error",
        "num_frames",
        "num_frames: Input should be greater than or equal to 1",
    )
    with pytest.raises(InvalidInput) as raised:
        client.detect()
    assert (raised.value.code, raised.value.message) == (
        "missing_input",
        "Either 'url' or 'img' parameter must be provided",
    )


def test_a_submit_retried_after_a_lost_answer_makes_one_task(
    live_api: str, api_key: str, face_jpeg: bytes, httpserver: HTTPServer
) -> None:
    """A gateway passes the submit on, then loses the answer (503): the client's retry, with the same
    Idempotency-Key, gets the task the first try made."""
    forwarded: list[httpx.Response] = []

    def gateway(request: Request) -> Response:
        upstream = httpx.post(
            f"{live_api}/v1/detect",
            content=request.get_data(),
            headers={name: request.headers[name] for name in ("Authorization", "Content-Type", "Idempotency-Key")},
            timeout=10,
        )
        forwarded.append(upstream)
        if len(forwarded) == 1:
            return Response("", status=503, headers={"Retry-After": "0"})
        return Response(upstream.content, status=upstream.status_code, content_type="application/json")

    httpserver.expect_request("/v1/detect", method="POST").respond_with_handler(gateway)
    with Client(httpserver.url_for(""), api_key) as through_gateway:
        accepted = through_gateway.detect(face_jpeg)
    keys = [request.headers["Idempotency-Key"] for request, _ in httpserver.log]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert [upstream.status_code for upstream in forwarded] == [202, 202]
    assert forwarded[1].headers["Idempotent-Replayed"] == "true"
    assert accepted.detect_task_id == forwarded[0].json()["detect_task_id"]
    with Client(live_api, api_key) as client:
        assert [summary.detect_task_id for summary in client.list()] == [accepted.detect_task_id]


def test_rate_limited_submits_are_retried_after_retry_after(live_api: str, tenant_name: str) -> None:
    with Client(live_api, new_key(tenant_name, rate="1/second")) as client:
        ids = [client.detect(f"https://example.com/{n}.jpg").detect_task_id for n in range(3)]
        assert client.request_count > 3  # some tries were answered 429 and made again after Retry-After
        assert sorted(summary.detect_task_id for summary in client.list()) == sorted(set(ids))


def test_a_real_delivery_verifies_and_can_be_sent_again(
    client: Client, tenant_name: str, worker, media_server, face_jpeg: bytes
) -> None:
    from facequeue.plumbing.sessions import get_engine

    media_server.expect_request("/hook", method="POST").respond_with_data("", status=204)
    # Set with SQL until PUT /v1/webhook-endpoint lands on the server (then: client.set_webhook_endpoint).
    with get_engine().begin() as connection:
        secrets = connection.execute(
            text("UPDATE tenants SET webhook_url = :url WHERE name = :name RETURNING webhook_secrets"),
            {"url": media_server.url_for("/hook"), "name": tenant_name},
        ).scalar_one()
    done = client.wait(client.detect(face_jpeg), timeout=90)
    log = wait_until(lambda: client.deliveries(done), until=lambda log: log.items, timeout=30, what="a delivery")
    assert [(event.type, event.webhook_id) for event in log.events] == [
        ("detect_task.succeeded", log.items[0].webhook_id)
    ]
    assert (log.items[0].attempt, log.items[0].status_code) == (1, 204)
    request = media_server.log[0][0]
    event = verify_webhook(request.get_data(), request.headers, secrets[0])
    assert (event.webhook_id, event.data["detect_task_id"]) == (log.events[0].webhook_id, done.detect_task_id)
    assert client.redeliver(done).webhook_id == event.webhook_id
    wait_until(lambda: len(media_server.log), until=lambda count: count == 2, timeout=30, what="2 requests served")
    again = media_server.log[1][0]
    assert verify_webhook(again.get_data(), again.headers, secrets[0]).webhook_id == event.webhook_id


def test_nothing_to_redeliver_is_a_conflict(client: Client) -> None:
    accepted = client.detect("https://example.com/a.jpg")
    assert client.deliveries(accepted).model_dump(include={"events", "items"}) == {"events": [], "items": []}
    with pytest.raises(Conflict) as raised:
        client.redeliver(accepted)
    assert (raised.value.status, raised.value.code) == (409, "no_webhook_event")


@pytest.mark.anyio
async def test_async_client_detects_waits_lists_and_streams(
    live_api: str, api_key: str, worker, face_jpeg: bytes
) -> None:
    async def manifest():
        for _ in range(2):
            yield {"img": b64(face_jpeg)}

    async with AsyncClient(live_api, api_key, timeout=10) as client:
        accepted = await client.detect(face_jpeg)
        changes = []
        done = await client.wait(accepted, timeout=90, on_progress=changes.append)
        assert done.status == "succeeded" and len(done.result.faces_obj["0"].region) == 1
        assert changes[-1] == done
        batch = await client.stream_batch(manifest())
        assert (await client.wait_batch(batch.batch_id, timeout=120)).counts["succeeded"] == 2
        results = [line async for line in client.batch_results(batch.batch_id)]
        assert [(line.position, line.status) for line in results] == [(0, "succeeded"), (1, "succeeded")]
        listed = [summary.detect_task_id async for summary in client.list(page_size=1)]
    assert len(listed) == 3 and listed[-1] == done.detect_task_id
