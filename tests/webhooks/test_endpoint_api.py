"""A tenant sets up its webhooks alone, with its API key: the endpoint, the secret and its rotation, recent
deliveries, callback_url on POST /v1/detect, and the non-destructive cancel. Real API, Postgres, Redis, a real
Celery worker (tests/webhooks/conftest.py) and real receivers over HTTP."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from werkzeug import Response

from db import deliveries as webhook_db
from db import tenants
from db.models import Tenant, utcnow
from facequeue.core.settings import Settings
from facequeue.core.webhooks import WebhookVerificationError, verify
from facequeue.plumbing.sessions import get_sessionmaker, session_scope
from tests.support import wait_for_final, wait_until
from tests.test_tenants import new_key
from tests.webhooks.test_delivery import PNG, receiver

pytestmark = pytest.mark.integration

GRACE = Settings().webhook_secret_grace


def tenant_client(key: str, **settings) -> TestClient:
    from api.app import create_app

    client = TestClient(create_app(Settings(auth="on", **settings)))
    client.headers["Authorization"] = f"Bearer {key}"
    return client


@pytest.fixture
def tenant(database: str) -> Iterator[tuple[str, TestClient]]:
    """A tenant of the test's own, and an API client holding its key."""
    name = f"hooks-{uuid.uuid4().hex[:10]}"
    # the tests poll /v1/deliveries every 0.1 s between their other calls: when deliveries come quickly, more
    # than the default 20 requests fall within one second and the 21st would be refused (429)
    with tenant_client(new_key(name, rate="100/second")) as client:
        yield name, client


def stored(name: str) -> Tenant:
    with session_scope() as session:
        tenant = tenants.find_tenant(session, name)
        session.expunge(tenant)
        return tenant


def error_of(response) -> tuple[int, str, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"], error["field"]


def delivered(client: TestClient, count: int, timeout: float = 20, **filters) -> list[dict]:
    """GET /v1/deliveries once it lists `count` attempts."""
    return wait_until(
        lambda: client.get("/v1/deliveries", params={"limit": 500, **filters}).json()["items"],
        until=lambda items: len(items) >= count,
        timeout=timeout,
        what=f"{count} deliveries",
        interval=0.1,
    )


def served_png(media_server) -> str:
    media_server.expect_request("/gray.png").respond_with_data(PNG, content_type="image/png")
    return media_server.url_for("/gray.png")


def test_the_endpoint_is_read_set_and_cleared(tenant) -> None:
    name, client = tenant
    empty = {"url": None, "disabled_at": None, "secret_rotated_at": None, "previous_secret_expires_at": None}
    assert client.get("/v1/webhook-endpoint").json() == empty
    put = client.put("/v1/webhook-endpoint", json={"url": "  https://hooks.example/fq  "})
    assert put.status_code == 200 and put.json() == {**empty, "url": "https://hooks.example/fq"}
    assert client.get("/v1/webhook-endpoint").json()["url"] == stored(name).webhook_url == "https://hooks.example/fq"
    deleted = client.delete("/v1/webhook-endpoint")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert client.get("/v1/webhook-endpoint").json() == empty and stored(name).webhook_url is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"url": "ftp://hooks.example/fq"}, (422, "invalid_url", "Invalid URL format", "url")),
        ({"url": "http://[::1/fq"}, (422, "invalid_url", "Invalid URL format", "url")),
        (
            {"url": "https://e.com/" + "a" * 2048},
            (422, "validation_error", "url: String should have at most 2048 characters", "url"),
        ),
        (
            {"url": "https://e.com/", "secret": "x"},
            (422, "validation_error", "secret: Extra inputs are not permitted", "secret"),
        ),
        ({}, (422, "validation_error", "url: Field required", "url")),
    ],
)
def test_a_bad_endpoint_is_refused(tenant, body: dict, expected: tuple) -> None:
    name, client = tenant
    assert error_of(client.put("/v1/webhook-endpoint", json=body)) == expected
    assert stored(name).webhook_url is None


def test_without_a_tenant_there_is_no_endpoint(client) -> None:
    for method, path in [("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/secret"), ("POST", "/rotate-secret")]:
        response = client.request(method, f"/v1/webhook-endpoint{path}", json={"url": "https://e.com/"})
        assert error_of(response)[:2] == (409, "no_tenant")
    assert "give each task a callback_url" in error_of(response)[2]


def test_the_endpoint_needs_a_key(tenant) -> None:
    _name, client = tenant
    response = client.get("/v1/webhook-endpoint", headers={"Authorization": "Bearer fq_not-a-key"})
    assert error_of(response)[:2] == (401, "unauthorized")


def test_rotation_returns_the_new_secret_and_keeps_the_old_one_signing(tenant) -> None:
    name, client = tenant
    first = client.get("/v1/webhook-endpoint/secret").json()["secret"]
    assert first == stored(name).webhook_secrets[0] and base64.b64decode(first.removeprefix("whsec_"))
    before = utcnow()
    rotated = client.post("/v1/webhook-endpoint/rotate-secret").json()
    second = rotated["secret"]
    assert second.startswith("whsec_") and second != first
    assert client.get("/v1/webhook-endpoint/secret").json() == {"secret": second}
    view = client.get("/v1/webhook-endpoint").json()
    assert view["previous_secret_expires_at"] == rotated["previous_secret_expires_at"]
    rotated_at = stored(name).webhook_secret_rotated_at
    assert before <= rotated_at <= utcnow() and datetime.fromisoformat(view["secret_rotated_at"]) == rotated_at
    assert stored(name).webhook_previous_secret_expires_at == rotated_at + timedelta(seconds=GRACE)
    assert tenants.signing_secrets(stored(name), utcnow()) == [second, first]
    # a second rotation: the first secret stops signing at once, the second one is in its grace period
    third = client.post("/v1/webhook-endpoint/rotate-secret").json()["secret"]
    assert tenants.signing_secrets(stored(name), utcnow()) == [third, second]
    # once the grace period is over only the current secret signs, and the view says so
    assert tenants.signing_secrets(stored(name), utcnow() + timedelta(seconds=GRACE + 1)) == [third]


def test_without_a_grace_period_the_old_secret_stops_at_once(tenant) -> None:
    name, client = tenant
    key = client.headers["Authorization"].removeprefix("Bearer ")
    with tenant_client(key, webhook_secret_grace=0) as no_grace:
        rotated = no_grace.post("/v1/webhook-endpoint/rotate-secret").json()
        assert rotated["previous_secret_expires_at"] is None
        assert no_grace.get("/v1/webhook-endpoint").json()["previous_secret_expires_at"] is None
    assert tenants.signing_secrets(stored(name), utcnow()) == [rotated["secret"]]


def test_of_two_rotations_at_once_one_wins(tenant) -> None:
    name, _client = tenant
    grace = timedelta(hours=1)
    with get_sessionmaker()() as late, session_scope() as early:
        read_late = tenants.find_tenant(late, name)  # both read the tenant before either rotates
        read_early = tenants.find_tenant(early, name)
        won = tenants.rotate_webhook_secret(early, read_early, grace)
        early.commit()
        assert tenants.rotate_webhook_secret(late, read_late, grace) is None
        late.rollback()
    assert stored(name).webhook_secrets[0] == won


def test_putting_a_gone_endpoint_again_enables_it(tenant) -> None:
    name, client = tenant
    url = "https://hooks.example/gone"
    client.put("/v1/webhook-endpoint", json={"url": url})
    tenant_id = stored(name).id
    with session_scope() as session:
        webhook_db.disable_endpoint(session, tenant_id, url, 410)
    disabled_at = client.get("/v1/webhook-endpoint").json()["disabled_at"]
    assert disabled_at is not None
    assert client.put("/v1/webhook-endpoint", json={"url": url}).json()["disabled_at"] is None
    with session_scope() as session:
        assert not webhook_db.endpoint_disabled(session, tenant_id, url)


def test_callback_url_wins_over_the_tenant_endpoint(tenant, webhook_worker, media_server) -> None:
    name, client = tenant
    endpoint, endpoint_url = receiver(media_server)
    callback, callback_url = receiver(media_server)
    client.put("/v1/webhook-endpoint", json={"url": endpoint_url})
    image = served_png(media_server)
    own = client.post("/v1/detect", json={"url": image, "callback_url": callback_url}).json()["detect_task_id"]
    default = client.post("/v1/detect", json={"url": image}).json()["detect_task_id"]
    [to_callback] = callback.wait_for(1)
    [to_endpoint] = endpoint.wait_for(1)
    secret = client.get("/v1/webhook-endpoint/secret").json()["secret"]
    assert verify(to_callback.body, to_callback.headers, secret)["data"]["detect_task_id"] == own
    assert verify(to_endpoint.body, to_endpoint.headers, secret)["data"]["detect_task_id"] == default
    time.sleep(0.5)  # nothing else follows
    assert (len(callback.requests), len(endpoint.requests)) == (1, 1)


@pytest.mark.parametrize("callback_url", ["not a url", "ftp://hooks.example/", "https://"])
def test_a_bad_callback_url_is_refused_at_submit(tenant, callback_url: str) -> None:
    _name, client = tenant
    response = client.post("/v1/detect", json={"url": "https://e.com/a.jpg", "callback_url": callback_url})
    assert error_of(response) == (422, "invalid_url", "Invalid URL format", "callback_url")
    assert client.get("/v1/detect").json()["items"] == []


def test_an_idempotency_key_binds_the_callback_url(tenant) -> None:
    _name, client = tenant
    body = {"url": "https://e.com/a.jpg", "callback_url": "https://hooks.example/a"}
    headers = {"Idempotency-Key": "one-submit"}
    first = client.post("/v1/detect", json=body, headers=headers)
    again = client.post("/v1/detect", json=body, headers=headers)
    assert again.json()["detect_task_id"] == first.json()["detect_task_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/v1/detect", json={**body, "callback_url": "https://hooks.example/b"}, headers=headers)
    assert error_of(other)[:2] == (409, "idempotency_conflict")


def test_batch_items_take_no_callback_url(tenant) -> None:
    _name, client = tenant
    item = {"url": "https://e.com/a.jpg", "callback_url": "https://hooks.example/a"}
    response = client.post("/v1/batches", json={"items": [item]})
    assert error_of(response) == (
        422,
        "validation_error",
        "items[0].callback_url: Extra inputs are not permitted",
        "items[0].callback_url",
    )


def test_cancel_stops_a_live_task_and_leaves_a_final_one_alone(tenant, webhook_worker, media_server) -> None:
    _name, client = tenant
    release = threading.Event()

    def slow_media(_request) -> Response:
        release.wait(10)
        return Response(PNG, content_type="image/png")

    media_server.expect_request("/slow.png").respond_with_handler(slow_media)
    hook, url = receiver(media_server)
    client.put("/v1/webhook-endpoint", json={"url": url})
    live = client.post("/v1/detect", json={"url": media_server.url_for("/slow.png")}).json()["detect_task_id"]
    try:
        canceled = client.post(f"/v1/detect/{live}/cancel")
    finally:
        release.set()
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled" and canceled.json()["finished_at"] is not None
    [event] = hook.wait_for(1)
    secret = client.get("/v1/webhook-endpoint/secret").json()["secret"]
    assert verify(event.body, event.headers, secret)["type"] == "detect_task.canceled"
    again = client.post(f"/v1/detect/{live}/cancel")
    assert error_of(again) == (
        409,
        "task_final",
        f"detect task {live} is already canceled: there is nothing to cancel, and its result is kept "
        f"(DELETE /v1/detect/{live} deletes it)",
        "detect_task_id",
    )
    done = client.post("/v1/detect", json={"url": served_png(media_server)}).json()["detect_task_id"]
    finished = wait_for_final(client, done)
    assert finished["status"] == "succeeded" and finished["result"] is not None
    assert error_of(client.post(f"/v1/detect/{done}/cancel"))[:2] == (409, "task_final")
    assert client.get(f"/v1/detect/{done}").json() == finished  # result kept, nothing changed
    assert len(hook.wait_for(2)) == 2  # the succeeded event, and no other one from the refused cancel


def test_cancel_is_tenant_isolated(tenant, client) -> None:
    _name, tenant_api = tenant
    task_id = tenant_api.post("/v1/detect", json={"url": "https://e.com/a.jpg"}).json()["detect_task_id"]
    assert error_of(client.post(f"/v1/detect/{task_id}/cancel"))[:2] == (404, "not_found")
    assert error_of(client.post("/v1/detect/no-such-task/cancel"))[:2] == (404, "not_found")


def test_recent_deliveries_across_tasks_and_batches(tenant, webhook_worker, media_server) -> None:
    name, client = tenant
    hook, url = receiver(media_server, Response("down", status=500), Response("ok"))
    client.put("/v1/webhook-endpoint", json={"url": url})
    image = served_png(media_server)
    media_server.expect_request("/missing.png").respond_with_data("no", status=404)
    succeeded = client.post("/v1/detect", json={"url": image}).json()["detect_task_id"]
    attempts = delivered(client, 2)  # 500, then 200 after the retry
    failed = client.post("/v1/detect", json={"url": media_server.url_for("/missing.png")}).json()["detect_task_id"]
    delivered(client, 3)
    batch_id = client.post("/v1/batches", json={"items": [{"url": image}]}).json()["batch_id"]
    items = delivered(client, 4)
    assert [(item["event_type"], item["status_code"]) for item in items] == [
        ("batch.completed", 200),
        ("detect_task.failed", 200),
        ("detect_task.succeeded", 200),
        ("detect_task.succeeded", 500),
    ]
    assert [(item["detect_task_id"], item["batch_id"]) for item in items] == [
        (None, batch_id),
        (failed, None),
        (succeeded, None),
        (succeeded, None),
    ]
    newest_first = items[-2:]
    assert newest_first == attempts
    assert {item["event_state"] for item in items} == {"succeeded"}
    retried = items[-1]
    assert set(retried) == {
        "webhook_id", "attempt", "url", "status_code", "error", "response_body", "latency_ms", "created_at",
        "next_attempt_at", "event_type", "event_state", "detect_task_id", "batch_id",
    }  # fmt: skip
    assert (retried["attempt"], retried["url"], retried["response_body"]) == (1, url, "down")
    assert retried["next_attempt_at"] is not None and items[-2]["webhook_id"] == retried["webhook_id"]
    # filters
    assert delivered(client, 1, status="failed") == [retried]
    assert [item["batch_id"] for item in delivered(client, 1, event_type="batch.completed")] == [batch_id]
    assert delivered(client, 2, detect_task_id=succeeded) == items[-2:]
    assert client.get("/v1/deliveries", params={"status": "succeeded"}).json()["items"] == items[:3]
    # pages of 3 then 1, following next_cursor
    first_page = client.get("/v1/deliveries", params={"limit": 3}).json()
    last_page = client.get("/v1/deliveries", params={"limit": 3, "cursor": first_page["next_cursor"]}).json()
    assert first_page["items"] + last_page["items"] == items and last_page["next_cursor"] is None
    assert len(hook.requests) == 4


def test_recent_deliveries_are_tenant_isolated(tenant, client, webhook_worker, media_server) -> None:
    _name, tenant_api = tenant
    _hook, url = receiver(media_server)
    tenant_api.put("/v1/webhook-endpoint", json={"url": url})
    task_id = tenant_api.post("/v1/detect", json={"url": served_png(media_server)}).json()["detect_task_id"]
    delivered(tenant_api, 1)
    with tenant_client(new_key(f"other-{uuid.uuid4().hex[:8]}")) as other:
        assert other.get("/v1/deliveries").json() == {"items": [], "next_cursor": None}
        assert other.get("/v1/deliveries", params={"detect_task_id": task_id}).json()["items"] == []
    assert all(item["detect_task_id"] != task_id for item in client.get("/v1/deliveries").json()["items"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"cursor": "not-a-cursor"}, "cursor is malformed"),
        ({"status": "pending"}, "status: Input should be 'succeeded' or 'failed'"),
        (
            {"event_type": "detect_task.started"},
            "event_type: Input should be 'detect_task.succeeded', 'detect_task.failed', 'detect_task.canceled' "
            "or 'batch.completed'",
        ),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
    ],
)
def test_recent_deliveries_refuse_bad_parameters(tenant, params: dict, message: str) -> None:
    _name, client = tenant
    assert error_of(client.get("/v1/deliveries", params=params)) == (422, "validation_error", message, *params)


def test_the_server_verify_refuses_what_the_old_secret_no_longer_signs(tenant, webhook_worker, media_server) -> None:
    name, client = tenant
    key = client.headers["Authorization"].removeprefix("Bearer ")
    hook, url = receiver(media_server)
    client.put("/v1/webhook-endpoint", json={"url": url})
    old = client.get("/v1/webhook-endpoint/secret").json()["secret"]
    with tenant_client(key, webhook_secret_grace=0) as no_grace:
        new = no_grace.post("/v1/webhook-endpoint/rotate-secret").json()["secret"]
    client.post("/v1/detect", json={"url": served_png(media_server)})
    [request] = hook.wait_for(1)
    assert verify(request.body, request.headers, new)["type"] == "detect_task.succeeded"
    with pytest.raises(WebhookVerificationError):
        verify(request.body, request.headers, old)
    assert len(request.headers["Webhook-Signature"].split(" ")) == 1 and stored(name).webhook_secrets[1] == old
