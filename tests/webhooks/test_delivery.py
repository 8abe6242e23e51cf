"""Webhooks end to end: API, Postgres, Redis, a real Celery worker on the webhooks queue, a real receiver."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from werkzeug import Response

from db import deliveries as webhook_db
from db import tenants
from db.models import DetectTask, Tenant, WebhookEvent, utcnow
from facequeue.core.enums import TaskStatus
from facequeue.core.settings import Settings, get_settings
from facequeue.core.webhooks import WebhookVerificationError, default_secret, verify
from facequeue.lifecycle.outbox import new_task_event, queue_task_event, republish_due_deliveries
from facequeue.plumbing.sessions import session_scope
from tests.support import wait_for_final, wait_until
from tests.webhooks.conftest import RETRY_SCHEDULE, Receiver, new_secret

pytestmark = pytest.mark.integration

PNG = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
SETTLED = {"succeeded", "failed", "disabled"}


def receiver(server, *responses: Response) -> tuple[Receiver, str]:
    """A receiver on its own path, so endpoints disabled by one test never affect another."""
    path = f"/hook-{secrets.token_hex(4)}"
    handler = Receiver(responses or (Response("ok"),))
    server.expect_request(path, method="POST").respond_with_handler(handler)
    return handler, server.url_for(path)


def submit(client: TestClient, server, callback_url: str) -> str:
    """A crun image task (the API that takes a callback_url) on a tiny image: it succeeds in milliseconds."""
    server.expect_request("/gray.png").respond_with_data(PNG, content_type="image/png")
    body = {"image_url": server.url_for("/gray.png"), "callback_url": callback_url}
    return client.post("/api/v1/client/job/detect-face-image", json=body).json()["data"]["detect_task_id"]


def settled_log(client: TestClient, task_id: str, attempts: int = 1, timeout: float = 60) -> dict:
    """The delivery log once the task's event is settled after at least `attempts` attempts."""
    return wait_until(
        lambda: client.get(f"/v1/detect/{task_id}/deliveries").json(),
        until=lambda log: log["events"] and log["events"][-1]["state"] in SETTLED and len(log["items"]) >= attempts,
        timeout=timeout,
        what=f"the webhook of {task_id} settled",
    )


def test_a_reply_holding_nul_bytes_is_logged_with_replacement_characters(client, webhook_worker, media_server) -> None:
    _, url = receiver(media_server, Response(b"ok\x00\xff!", status=200))
    [item] = settled_log(client, submit(client, media_server, url))["items"]
    assert (item["status_code"], item["response_body"]) == (200, "ok\ufffd\ufffd!")


def gap(item: dict) -> float:
    """Seconds from an attempt to the next one it scheduled."""
    scheduled, made = datetime.fromisoformat(item["next_attempt_at"]), datetime.fromisoformat(item["created_at"])
    return (scheduled - made).total_seconds()


def test_event_is_signed_and_verifies(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server, Response("thanks", status=200))
    task_id = submit(client, media_server, url)
    log = settled_log(client, task_id)
    [request] = hook.requests
    event = verify(request.body, request.headers, default_secret(get_settings()))
    assert event["type"] == "detect_task.succeeded"
    assert datetime.fromisoformat(event["timestamp"]) <= datetime.now(UTC)
    assert event["data"] == {
        "detect_task_id": task_id,
        "status": "succeeded",
        "result_url": f"http://127.0.0.1:8000/v1/detect/{task_id}",
        "error": None,
    }
    assert abs(int(request.headers["Webhook-Timestamp"]) - time.time()) < 30
    assert request.headers["Webhook-Id"] == log["events"][0]["webhook_id"]
    assert request.headers["Content-Type"] == "application/json"
    [item] = log["items"]
    assert (item["attempt"], item["status_code"], item["error"], item["next_attempt_at"]) == (1, 200, None, None)
    assert item["response_body"] == "thanks" and item["latency_ms"] >= 0 and item["url"] == url
    # the signature binds the body, and the secret
    with pytest.raises(WebhookVerificationError):
        verify(request.body.replace(b"succeeded", b"failed"), request.headers, default_secret(get_settings()))
    with pytest.raises(WebhookVerificationError):
        verify(request.body, request.headers, new_secret())


@pytest.fixture
def rotating_tenant(database: str):
    """A tenant in the middle of a key rotation (new secret first), with an API key."""
    new, old = new_secret(), new_secret()
    with session_scope() as session:
        tenant = tenants.get_or_create_tenant(session, f"webhooks-{secrets.token_hex(4)}")
        tenant.webhook_secrets = [new, old]
        _, key = tenants.create_key(session, tenant)
        tenant_id = tenant.id
    yield tenant_id, key, (new, old)
    with session_scope() as session:
        session.delete(session.get(Tenant, tenant_id))


def test_rotation_signs_with_both_secrets_to_the_tenant_endpoint(
    client, webhook_worker, media_server, rotating_tenant
) -> None:
    from api.app import create_app

    tenant_id, key, both_secrets = rotating_tenant
    hook, url = receiver(media_server)
    with session_scope() as session:
        session.get(Tenant, tenant_id).webhook_url = url  # no callback_url: the tenant's endpoint is used
    media_server.expect_request("/gray.png").respond_with_data(PNG, content_type="image/png")
    with TestClient(create_app(Settings(auth="on"))) as tenant_client:
        tenant_client.headers["Authorization"] = f"Bearer {key}"
        task_id = tenant_client.post("/v1/detect", json={"url": media_server.url_for("/gray.png")}).json()[
            "detect_task_id"
        ]
        log = settled_log(tenant_client, task_id)
    [request] = hook.requests
    assert len(request.headers["Webhook-Signature"].split(" ")) == 2
    for secret in both_secrets:
        assert verify(request.body, request.headers, secret)["data"]["detect_task_id"] == task_id
    assert log["items"][0]["status_code"] == 200
    # another caller (here the tenant-less one) cannot see the tenant's deliveries, nor redeliver
    assert client.get(f"/v1/detect/{task_id}/deliveries").status_code == 404
    assert client.post(f"/v1/detect/{task_id}/redeliver").status_code == 404


def test_server_errors_are_retried_until_a_2xx(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server, Response("down", status=500), Response("down", status=500), Response("ok"))
    task_id = submit(client, media_server, url)
    log = settled_log(client, task_id, attempts=3)
    assert log["events"][0]["state"] == "succeeded"
    assert [(item["attempt"], item["status_code"]) for item in log["items"]] == [(1, 500), (2, 500), (3, 200)]
    assert [gap(item) for item in log["items"][:2]] == pytest.approx(list(RETRY_SCHEDULE[:2]))
    assert log["items"][2]["next_attempt_at"] is None
    # one event: the same webhook-id and the same bytes on every attempt
    assert len({request.headers["Webhook-Id"] for request in hook.requests}) == 1
    assert len({request.body for request in hook.requests}) == 1


def test_gone_disables_the_endpoint(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server, Response("gone", status=410))
    first = submit(client, media_server, url)
    log = settled_log(client, first)
    assert log["events"][0]["state"] == "disabled"
    assert [item["status_code"] for item in log["items"]] == [410]
    later = submit(client, media_server, url)
    assert wait_for_final(client, later)["status"] == "succeeded"
    later_log = client.get(f"/v1/detect/{later}/deliveries").json()
    assert later_log["events"][0]["state"] == "disabled" and later_log["items"] == []
    time.sleep(sum(RETRY_SCHEDULE))  # longer than any retry would wait
    assert len(hook.requests) == 1
    refused = client.post(f"/v1/detect/{first}/redeliver")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "webhook_endpoint_disabled"


def test_retry_after_sets_the_next_attempt(client, webhook_worker, media_server) -> None:
    busy = Response("busy", status=503, headers={"Retry-After": "1"})
    _hook, url = receiver(media_server, busy, Response("ok"))
    task_id = submit(client, media_server, url)
    log = settled_log(client, task_id, attempts=2)
    first, second = log["items"]
    assert first["status_code"] == 503 and gap(first) >= 1.0 > RETRY_SCHEDULE[0]
    assert second["status_code"] == 200 and log["events"][0]["state"] == "succeeded"


def test_redirects_are_failures_and_not_followed(client, webhook_worker, media_server) -> None:
    elsewhere, elsewhere_url = receiver(media_server)
    hook, url = receiver(media_server, Response("", status=302, headers={"Location": elsewhere_url}))
    task_id = submit(client, media_server, url)
    log = settled_log(client, task_id, attempts=len(RETRY_SCHEDULE) + 1)
    assert log["events"][0]["state"] == "failed"  # every retry used up
    assert [item["status_code"] for item in log["items"]] == [302] * (len(RETRY_SCHEDULE) + 1)
    assert elsewhere.requests == [] and len(hook.requests) == len(RETRY_SCHEDULE) + 1


def test_internal_callback_is_refused_at_send_time(database, webhook_worker, media_server) -> None:
    """An API that allows 10.0.0.1 takes the callback; the worker (FACEQUEUE_ALLOWED_HOSTS=127.0.0.1/32 only, as
    after the operator narrowed it or the name's DNS changed) still refuses to send there."""
    from api.app import create_app

    with TestClient(create_app(Settings(allowed_hosts="127.0.0.1/32,10.0.0.1/32"))) as client:
        task_id = submit(client, media_server, "http://10.0.0.1/hook")
        log = settled_log(client, task_id)
    [item] = log["items"]  # permanent: no retries
    assert log["events"][0]["state"] == "failed"
    assert item["status_code"] is None and item["error"] == "url_forbidden: address 10.0.0.1 is private"
    assert webhook_worker.process.poll() is None


def test_redeliver_sends_the_same_event_again(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server)
    task_id = submit(client, media_server, url)
    settled_log(client, task_id)
    accepted = client.post(f"/v1/detect/{task_id}/redeliver")
    assert accepted.status_code == 202
    log = settled_log(client, task_id, attempts=2)
    assert [(item["attempt"], item["status_code"]) for item in log["items"]] == [(1, 200), (2, 200)]
    first, again = hook.requests
    assert first.headers["Webhook-Id"] == again.headers["Webhook-Id"] == accepted.json()["webhook_id"]
    assert first.body == again.body


def test_redeliver_without_an_event_is_a_conflict(client, webhook_worker, media_server) -> None:
    media_server.expect_request("/gray.png").respond_with_data(PNG, content_type="image/png")
    task_id = client.post("/v1/detect", json={"url": media_server.url_for("/gray.png")}).json()["detect_task_id"]
    assert wait_for_final(client, task_id)["status"] == "succeeded"
    assert client.get(f"/v1/detect/{task_id}/deliveries").json() == {
        "detect_task_id": task_id,
        "events": [],
        "items": [],
    }
    refused = client.post(f"/v1/detect/{task_id}/redeliver")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_webhook_event"


def test_canceled_task_sends_a_canceled_event(client, webhook_worker, media_server) -> None:
    release = threading.Event()

    def slow_media(_request) -> Response:
        release.wait(10)
        return Response(PNG, content_type="image/png")

    media_server.expect_request("/slow.png").respond_with_handler(slow_media)
    hook, url = receiver(media_server)
    body = {"image_url": media_server.url_for("/slow.png"), "callback_url": url}
    task_id = client.post("/api/v1/client/job/detect-face-image", json=body).json()["data"]["detect_task_id"]
    try:
        assert client.delete(f"/v1/detect/{task_id}").json()["status"] == "canceled"
        log = settled_log(client, task_id)
    finally:
        release.set()
    event = verify(hook.requests[0].body, hook.requests[0].headers, default_secret(get_settings()))
    assert event["type"] == "detect_task.canceled" and event["data"]["status"] == "canceled"
    assert event["data"]["error"] is None and log["events"][0]["type"] == "detect_task.canceled"


def test_unknown_task_has_no_deliveries(client) -> None:
    assert client.get("/v1/detect/no-such-task/deliveries").status_code == 404
    assert client.post("/v1/detect/no-such-task/redeliver").status_code == 404


def final_task(callback_url: str) -> DetectTask:
    return DetectTask(
        status=TaskStatus.FAILED,
        error_code="download_failed",
        error_msg="HTTP 404",
        callback_url=callback_url,
        finished_at=utcnow(),
    )


def test_a_rolled_back_final_status_sends_nothing(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server)
    task = final_task(url)
    with pytest.raises(RuntimeError), session_scope() as session:
        session.add(task)
        session.flush()
        queue_task_event(session, task.id, get_settings())
        raise RuntimeError("the transaction that wrote the final status fails")
    time.sleep(0.5)  # the behaviour under test: nothing is sent within this
    assert hook.requests == []
    with session_scope() as session:
        assert webhook_db.events_for_task(session, task.id) == []


def test_an_event_whose_publish_was_lost_is_republished(client, webhook_worker, media_server) -> None:
    hook, url = receiver(media_server)
    task = final_task(url)
    with session_scope() as session:
        session.add(task)
        session.flush()
        # the outbox row commits, then the process dies before publishing
        event_id = new_task_event(session, task.id, get_settings()).id
    with session_scope() as session:
        # Earlier tests in this process may have left overdue events: count ours by the difference.
        before = republish_due_deliveries(session)  # ours is not overdue yet: its publish may follow
        overdue = utcnow() - timedelta(minutes=5)
        session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id).values(next_attempt_at=overdue))
        assert republish_due_deliveries(session) == before + 1
    [request] = hook.wait_for(1)
    event = verify(request.body, request.headers, default_secret(get_settings()))
    assert event["type"] == "detect_task.failed"
    assert event["data"]["error"] == {"code": "download_failed", "message": "HTTP 404"}
    assert settled_log(client, task.id)["events"][0]["state"] == "succeeded"
