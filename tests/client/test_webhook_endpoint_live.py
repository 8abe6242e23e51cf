"""The client's webhook-endpoint calls against the real server (uvicorn, Postgres, Redis, a real Celery worker),
with a real receiver: set the endpoint, read and rotate the secret, verify what arrives, list the deliveries."""

from __future__ import annotations

import asyncio

import pytest
from facequeue_client import AsyncClient, Client, Conflict, InvalidInput, NotFound, verify_webhook
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.support import wait_until
from tests.webhooks.conftest import Receiver

pytestmark = pytest.mark.integration


def receiving(server: HTTPServer) -> tuple[Receiver, str]:
    hook = Receiver([Response("ok")])
    server.expect_request("/hook", method="POST").respond_with_handler(hook)
    return hook, server.url_for("/hook")


def deliveries_once(client: Client, count: int, **filters) -> list:
    return wait_until(
        lambda: list(client.recent_deliveries(**filters)),
        until=lambda found: len(found) >= count,
        timeout=30,
        what=f"{count} deliveries",
        interval=0.2,
    )


def test_a_tenant_sets_up_its_webhooks_with_the_client(client: Client, worker, media_server, face_jpeg) -> None:
    assert client.webhook_endpoint().url is None
    hook, url = receiving(media_server)
    endpoint = client.set_webhook_endpoint(url)
    assert (endpoint.url, endpoint.secret_rotated_at, endpoint.previous_secret_expires_at) == (url, None, None)
    first_secret = client.webhook_secret().secret

    done = client.wait(client.detect(face_jpeg), timeout=90)
    [received] = hook.wait_for(1)
    event = verify_webhook(received.body, received.headers, first_secret)
    assert (event.type, event.data["detect_task_id"]) == ("detect_task.succeeded", done.detect_task_id)

    rotated = client.rotate_webhook_secret()
    assert client.webhook_secret().secret == rotated.secret != first_secret
    assert client.webhook_endpoint().previous_secret_expires_at == rotated.previous_secret_expires_at
    media_server.expect_request("/missing.jpg").respond_with_data("no", status=404)
    failed = client.wait(client.detect(media_server.url_for("/missing.jpg")), timeout=90)
    assert failed.status == "failed"
    second = hook.wait_for(2)[1]
    for secret in (rotated.secret, first_secret):  # both sign during the grace period
        assert verify_webhook(second.body, second.headers, secret).data["detect_task_id"] == failed.detect_task_id

    items = deliveries_once(client, 2)
    assert [(item.event_type, item.status_code) for item in items] == [
        ("detect_task.failed", 200),
        ("detect_task.succeeded", 200),
    ]
    assert [item.webhook_id for item in items] == [second.headers["Webhook-Id"], received.headers["Webhook-Id"]]
    only = list(client.recent_deliveries(event_type="detect_task.succeeded", page_size=1))
    assert [item.detect_task_id for item in only] == [done.detect_task_id]
    assert list(client.recent_deliveries(status="failed")) == []
    assert [item.attempt for item in client.recent_deliveries(detect_task_id=failed.detect_task_id)] == [1]

    assert client.delete_webhook_endpoint() is None
    assert client.webhook_endpoint().url is None


def test_endpoint_errors_are_typed(client: Client) -> None:
    with pytest.raises(InvalidInput) as bad_url:
        client.set_webhook_endpoint("ftp://hooks.example/")
    assert (bad_url.value.code, bad_url.value.field, bad_url.value.message) == (
        "invalid_url",
        "url",
        "Invalid URL format",
    )
    with pytest.raises(InvalidInput) as bad_status:
        list(client.recent_deliveries(status="pending"))
    assert (bad_status.value.code, bad_status.value.field) == ("validation_error", "status")


def test_cancel_answers_a_final_task_with_one_request_more(client: Client, worker, face_jpeg) -> None:
    done = client.wait(client.detect(face_jpeg), timeout=90)
    before = client.request_count
    assert client.cancel(done) == client.get(done)
    assert client.request_count == before + 3  # the refused POST .../cancel, then the GET it reads, then ours
    with pytest.raises(NotFound):
        client.cancel("no-such-task")


def test_the_async_client_speaks_the_same_calls(live_api: str, api_key: str, media_server) -> None:
    _hook, url = receiving(media_server)

    async def scenario() -> tuple:
        async with AsyncClient(live_api, api_key, timeout=10) as client:
            await client.set_webhook_endpoint(url)
            secret = (await client.webhook_secret()).secret
            rotated = await client.rotate_webhook_secret()
            task = await client.detect("https://example.com/a.jpg")  # no worker: it stays queued
            canceled = await client.cancel(task)
            again = await client.cancel(task)
            items = [item async for item in client.recent_deliveries()]
            await client.delete_webhook_endpoint()
            return secret, rotated, canceled, again, items, await client.webhook_endpoint()

    secret, rotated, canceled, again, items, endpoint = asyncio.run(scenario())
    assert secret.startswith("whsec_") and rotated.secret != secret
    assert canceled.status == again.status == "canceled" and again.finished_at == canceled.finished_at
    assert items == [] and endpoint.url is None


def test_a_conflict_other_than_task_final_is_raised(media_server) -> None:
    media_server.expect_request("/v1/detect/t1/cancel", method="POST").respond_with_json(
        {"error": {"code": "busy", "message": "try later", "field": None}}, status=409
    )
    with Client(media_server.url_for(""), "k") as other, pytest.raises(Conflict) as raised:
        other.cancel("t1")
    assert (raised.value.code, raised.value.message) == ("busy", "try later")
