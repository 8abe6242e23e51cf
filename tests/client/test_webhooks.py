"""Webhook helpers of the client: the endpoint calls' exact requests (served here by pytest-httpserver; the
real server answers them in test_webhook_endpoint_live.py) and `verify_webhook` on events signed like the server
signs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from facequeue_client import Client, NotFound, WebhookEndpoint, WebhookVerificationError, verify_webhook
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook

from facequeue.core.webhooks import encode_event, signature_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_c2VjcmV0LWJlZm9yZS10aGUtcm90YXRpb24="
ENDPOINT_VIEW = {
    "url": "https://me.example/hook",
    "secret_rotated_at": "2026-11-20T10:00:00Z",
    "previous_secret_expires_at": None,
}


def test_endpoint_calls_send_the_agreed_requests(httpserver: HTTPServer) -> None:
    rotated = {"secret": "whsec_bmV3LXNlY3JldA==", "previous_secret_expires_at": "2026-11-21T10:00:00Z"}
    httpserver.expect_ordered_request("/v1/webhook-endpoint", method="GET").respond_with_json({"url": None})
    httpserver.expect_ordered_request(
        "/v1/webhook-endpoint", method="PUT", json={"url": "https://me.example/hook"}
    ).respond_with_json(ENDPOINT_VIEW)
    httpserver.expect_ordered_request("/v1/webhook-endpoint/rotate-secret", method="POST").respond_with_json(rotated)
    httpserver.expect_ordered_request("/v1/webhook-endpoint", method="DELETE").respond_with_data("", status=204)
    with Client(httpserver.url_for(""), "fq_key") as client:
        assert client.webhook_endpoint() == WebhookEndpoint(url=None)
        endpoint = client.set_webhook_endpoint("https://me.example/hook")
        secret = client.rotate_webhook_secret()
        assert client.delete_webhook_endpoint() is None
    httpserver.check_assertions()
    assert endpoint.url == "https://me.example/hook"
    assert endpoint.secret_rotated_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert secret.secret == rotated["secret"]
    assert secret.previous_secret_expires_at == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert all(request.headers["Authorization"] == "Bearer fq_key" for request, _ in httpserver.log)


def test_recent_deliveries_follow_cursors_with_filters(httpserver: HTTPServer) -> None:
    filters = {"status": "failed", "event_type": "detect_task.failed", "limit": "2"}
    delivery = {"webhook_id": "msg_1", "attempt": 1, "url": "https://me.example/hook", "status_code": 500}
    httpserver.expect_ordered_request("/v1/deliveries", query_string=filters).respond_with_json(
        {"items": [delivery, {**delivery, "attempt": 2}], "next_cursor": "c2"}
    )
    httpserver.expect_ordered_request("/v1/deliveries", query_string={**filters, "cursor": "c2"}).respond_with_json(
        {"items": [{**delivery, "webhook_id": "msg_0"}], "next_cursor": None}
    )
    with Client(httpserver.url_for(""), "k") as client:
        found = client.recent_deliveries(status="failed", event_type="detect_task.failed", page_size=2)
        assert [(d.webhook_id, d.attempt) for d in found] == [("msg_1", 1), ("msg_1", 2), ("msg_0", 1)]
    httpserver.check_assertions()


def test_a_missing_endpoint_route_is_a_typed_not_found(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/webhook-endpoint").respond_with_json({"detail": "Not Found"}, status=404)
    with Client(httpserver.url_for(""), "k") as client, pytest.raises(NotFound) as raised:
        client.webhook_endpoint()
    assert (raised.value.status, raised.value.code, raised.value.message) == (404, "http_404", "HTTP 404 NOT FOUND")


def server_signed(event: dict, secrets: list[str], sent_at: datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """An event encoded and signed by the server's own webhook code."""
    body = encode_event(event)
    headers = signature_headers("msg_2q8fa", sent_at or datetime.now(UTC), body, secrets)
    return body.encode(), {name.title(): value for name, value in headers.items()}  # as some frameworks spell them


EVENT = {
    "type": "detect_task.succeeded",
    "timestamp": "2026-11-21T20:31:02.114Z",
    "data": {
        "detect_task_id": "Wc3v9m",
        "status": "succeeded",
        "result_url": "http://x/v1/detect/Wc3v9m",
        "error": None,
    },
}


def test_verify_webhook_returns_the_event() -> None:
    body, headers = server_signed(EVENT, [SECRET])
    event = verify_webhook(body, headers, SECRET)
    assert (event.webhook_id, event.type, event.data) == ("msg_2q8fa", "detect_task.succeeded", EVENT["data"])
    assert event.timestamp == datetime(2026, 11, 21, 20, 31, 2, 114000, tzinfo=UTC)
    batch = {"type": "batch.completed", "timestamp": "2026-11-21T20:31:02Z", "data": {"batch_id": "bt_1", "total": 2}}
    body, headers = server_signed(batch, [SECRET])
    assert verify_webhook(body.decode(), headers, SECRET).data == {"batch_id": "bt_1", "total": 2}


def test_both_secrets_verify_during_a_rotation() -> None:
    body, headers = server_signed(EVENT, [SECRET, OLD_SECRET])
    assert verify_webhook(body, headers, OLD_SECRET).type == verify_webhook(body, headers, SECRET).type


# Only the type is ours to assert: the messages are standardwebhooks' wording, which changes between releases
# (1.3.0 says "No matching signature found" for a garbage signature header).
@pytest.mark.parametrize(
    "tamper",
    [
        lambda body, headers: (body, headers, OLD_SECRET),
        lambda body, headers: (body.replace(b"succeeded", b"failed"), headers, SECRET),
        lambda body, headers: (body, {**headers, "Webhook-Signature": "garbage"}, SECRET),
        lambda body, headers: (body, {"Webhook-Id": "msg_2q8fa"}, SECRET),
    ],
    ids=["another secret", "tampered body", "garbage signature", "missing headers"],
)
def test_verify_webhook_refuses_what_was_not_signed_with_the_secret(tamper) -> None:
    body, headers, secret = tamper(*server_signed(EVENT, [SECRET]))
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret)


def test_verify_webhook_refuses_events_older_than_five_minutes() -> None:
    body, headers = server_signed(EVENT, [SECRET], sent_at=datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, SECRET)
    body, headers = server_signed(EVENT, [SECRET], sent_at=datetime.now(UTC) - timedelta(minutes=4))
    assert verify_webhook(body, headers, SECRET).type == "detect_task.succeeded"


def test_a_signed_body_that_is_not_json_is_refused() -> None:
    sent_at = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("msg_1", sent_at, "not json"),
    }
    with pytest.raises(WebhookVerificationError, match="malformed webhook"):
        verify_webhook(b"not json", headers, SECRET)
