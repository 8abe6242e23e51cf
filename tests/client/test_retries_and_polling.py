"""Retries, timeouts and polling pace, against a real local HTTP server (pytest-httpserver) that answers
429/503 or slow tasks on purpose, since the real API can't be made to do so on demand."""

from __future__ import annotations

import json
import time

import pytest
from facequeue_client import (
    Client,
    ConnectionFailed,
    PollPolicy,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    WaitTimeout,
)
from facequeue_client.errors import retry_after_seconds
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.support import free_port

ACCEPTED = {"detect_task_id": "tk_1", "status": "queued"}
NO_ROUTE = {"error": {"code": "not_found", "message": "Not Found"}}  # a server from before the event stream


def task(status: str, done: int = 0, total: int = 5) -> dict:
    return {"detect_task_id": "tk_1", "status": status, "progress": {"done": done, "total": total}}


def test_a_retried_submit_reuses_one_idempotency_key(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def unavailable_once(request: Request) -> Response:
        seen.append(request)
        if len(seen) == 1:
            return Response("", status=503, headers={"Retry-After": "0"})
        return Response(json.dumps(ACCEPTED), status=202, content_type="application/json")

    httpserver.expect_request("/v1/detect", method="POST").respond_with_handler(unavailable_once)
    with Client(httpserver.url_for(""), "fq_key") as client:
        accepted = client.detect("https://example.com/a.jpg", num_frames=3)
        assert client.request_count == 2
    assert (accepted.detect_task_id, accepted.status) == ("tk_1", "queued")
    keys = [request.headers["Idempotency-Key"] for request in seen]
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) == 32
    assert [request.json for request in seen] == [{"url": "https://example.com/a.jpg", "num_frames": 3}] * 2
    assert seen[0].headers["Authorization"] == "Bearer fq_key"


def test_each_detect_call_has_its_own_key_unless_one_is_given(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/detect", method="POST").respond_with_json(ACCEPTED, status=202)
    with Client(httpserver.url_for(""), "k") as client:
        client.detect(b"\xff\xd8 jpeg bytes")
        client.detect(b"\xff\xd8 jpeg bytes")
        client.detect(b"\xff\xd8 jpeg bytes", idempotency_key="order-17")
    keys = [request.headers["Idempotency-Key"] for request, _ in httpserver.log]
    assert keys[0] != keys[1] and keys[2] == "order-17"
    # bytes go as the body itself, the options in the query string
    first = httpserver.log[0][0]
    assert (first.data, first.headers["Content-Type"]) == (b"\xff\xd8 jpeg bytes", "application/octet-stream")
    assert first.args == {}


def test_an_upload_is_retried_with_the_same_bytes_options_and_key(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/detect", method="POST").respond_with_data("", status=503)
    httpserver.expect_ordered_request("/v1/detect", method="POST").respond_with_json(ACCEPTED, status=202)
    with Client(httpserver.url_for(""), "k") as client:
        assert client.detect(b"jpeg", max_side=320, persons=True).detect_task_id == "tk_1"
    sent = [(request.data, request.args.to_dict(), request.headers["Idempotency-Key"]) for request, _ in httpserver.log]
    assert len(sent) == 2 and sent[0] == sent[1]
    assert sent[0][:2] == (b"jpeg", {"max_side": "320", "persons": "true"})


def test_429_is_retried_after_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/detect/tk_1").respond_with_data("", status=429, headers={"Retry-After": "1"})
    httpserver.expect_ordered_request("/v1/detect/tk_1").respond_with_json(task("processing"))
    with Client(httpserver.url_for(""), "k") as client:
        started = time.monotonic()
        assert client.get("tk_1").status == "processing"
        assert time.monotonic() - started >= 1.0
        assert client.request_count == 2


def test_retries_are_bounded(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/detect/tk_1").respond_with_data("", status=503, headers={"Retry-After": "0"})
    with Client(httpserver.url_for(""), "k", retry=RetryPolicy(attempts=3)) as client:
        with pytest.raises(ServiceUnavailable) as raised:
            client.get("tk_1")
        assert client.request_count == 3
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (503, "http_503", 0.0)


def test_a_retry_after_beyond_max_wait_is_not_waited_for(httpserver: HTTPServer) -> None:
    body = {
        "error": {"code": "rate_limited", "message": "Rate limit of 1/hour exceeded; retry in 3600s", "field": None}
    }
    httpserver.expect_request("/v1/detect/tk_1").respond_with_json(body, status=429, headers={"Retry-After": "3600"})
    with Client(httpserver.url_for(""), "k") as client:
        started = time.monotonic()
        with pytest.raises(RateLimited) as raised:
            client.get("tk_1")
        assert time.monotonic() - started < 1 and client.request_count == 1
    assert (raised.value.retry_after, raised.value.message) == (3600.0, body["error"]["message"])


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < retry_after_seconds(in_a_minute) <= 60
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_streamed_batch_is_chunked_jsonl_and_never_retried(httpserver: HTTPServer) -> None:
    handed_out: list[int] = []

    def items():
        for n in range(3):
            handed_out.append(n)
            yield {"url": f"https://example.com/{n}.jpg"}

    httpserver.expect_request("/v1/batches", method="POST").respond_with_data("", status=503)
    with Client(httpserver.url_for(""), "k") as client:
        with pytest.raises(ServiceUnavailable):
            client.stream_batch(items(), defaults={"num_frames": 2}, callback_url="https://me.example/hook")
        assert client.request_count == 1
    request = httpserver.log[0][0]
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in request.headers
    assert request.args.to_dict() == {"defaults": '{"num_frames":2}', "callback_url": "https://me.example/hook"}
    assert request.get_data().splitlines() == [b'{"url":"https://example.com/%d.jpg"}' % n for n in range(3)]
    assert handed_out == [0, 1, 2]


def test_wait_backs_off_and_reports_each_change(httpserver: HTTPServer) -> None:
    """A server without the event stream (404 at /events) is polled."""
    answers = [
        task("queued"),
        task("processing", 0),
        task("processing", 0),
        task("processing", 3),
        task("succeeded", 5),
    ]
    httpserver.expect_ordered_request("/v1/detect/tk_1/events").respond_with_json(NO_ROUTE, status=404)
    for answer in answers:
        httpserver.expect_ordered_request("/v1/detect/tk_1").respond_with_json(answer)
    changes = []
    with Client(httpserver.url_for(""), "k") as client:
        done = client.wait("tk_1", timeout=30, on_progress=changes.append)
        assert client.request_count == 1 + len(answers)
    assert done.status == "succeeded"
    assert [(t.status, t.progress.done) for t in changes] == [
        ("queued", 0),
        ("processing", 0),
        ("processing", 3),
        ("succeeded", 5),
    ]


def test_wait_pauses_grow_from_a_quarter_second(httpserver: HTTPServer) -> None:
    arrivals: list[float] = []

    def still_processing(_request: Request) -> Response:
        arrivals.append(time.monotonic())
        return Response(json.dumps(task("processing", 1)), content_type="application/json")

    httpserver.expect_request("/v1/detect/tk_1/events").respond_with_json(NO_ROUTE, status=404)
    httpserver.expect_request("/v1/detect/tk_1").respond_with_handler(still_processing)
    with Client(httpserver.url_for(""), "k") as client:
        with pytest.raises(WaitTimeout) as raised:
            client.wait("tk_1", timeout=2.5)
    assert raised.value.last.status == "processing" and "task tk_1 is still processing after 2.5s" in str(raised.value)
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
    policy = PollPolicy()
    expected = [min(policy.first * policy.growth**n, policy.longest) for n in range(len(gaps))]
    # 0.25 + 0.375 + 0.56 + 0.84 = 2.03 s, then the last pause is cut to the deadline: 6 polls at most
    # (5 when the machine is slow enough that the requests themselves eat into the 2.5 s)
    assert len(arrivals) in (5, 6) and arrivals[-1] - arrivals[0] >= 2.3
    for gap, pause in zip(gaps[:-1], expected, strict=False):
        assert pause <= gap < pause + 0.5


def test_an_unreachable_server_is_one_typed_error() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "k") as client:
        with pytest.raises(ConnectionFailed) as raised:
            client.get("tk_1")
    assert raised.value.code == "connection_failed" and "cannot reach the facequeue server at" in raised.value.message


def test_server_and_key_come_from_the_environment(httpserver: HTTPServer, monkeypatch) -> None:
    monkeypatch.setenv("FACEQUEUE_SERVER", httpserver.url_for("/"))
    monkeypatch.setenv("FACEQUEUE_API_KEY", "fq_from_env")
    httpserver.expect_request("/v1/detect/tk_1").respond_with_json(task("queued"))
    with Client() as client:
        client.get("tk_1")
        assert client.base_url == httpserver.url_for("/").rstrip("/")
    request = httpserver.log[0][0]
    assert request.headers["Authorization"] == "Bearer fq_from_env"
    assert request.headers["User-Agent"].startswith("facequeue-client/")
