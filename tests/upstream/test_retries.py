"""Timeouts, retries and Retry-After, against a real HTTP server (Akool protocol)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.upstream.fake_upstreams import stalled, status
from workers.detectors.upstream.akool import AkoolUpstream
from workers.detectors.upstream.failures import Failure, UpstreamError
from workers.detectors.upstream.guard import BACKOFF_MAX, MAX_RETRY_AFTER
from workers.retry_after import parse_retry_after


@pytest.fixture
def released() -> Iterator[threading.Event]:
    """Set at teardown, so stalled handlers finish before the test ends, pass or fail."""
    event = threading.Event()
    yield event
    event.set()


def test_slow_upstream_times_out_on_every_attempt(make_settings, fake, released, sleeps, astronaut):
    fake.answer = stalled(released, fake.answer)
    akool = AkoolUpstream(make_settings(upstream_read_timeout=0.2, upstream_max_attempts=2), sleep=sleeps.append)

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.TIMEOUT
    assert raised.value.detail == "upstream akool did not answer within 0.2 s (gave up after 2 attempts)"
    assert len(fake.requests) == 2 and len(sleeps) == 1
    akool.close()


def test_server_error_then_success_is_retried_with_backoff(akool, fake, sleeps, astronaut):
    fake.fail_next(status(500))

    faces = akool.detect(astronaut, max_side=1280)

    assert len(faces) == 1
    assert len(fake.requests) == 2
    [wait] = sleeps
    assert 0 < wait <= BACKOFF_MAX


def test_persistent_server_error_gives_up_after_max_attempts(akool, fake, sleeps, astronaut):
    fake.fail_next(*[status(503)] * 5)

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.SERVER_ERROR
    assert raised.value.detail == "upstream akool answered HTTP 503: HTTP 503 (gave up after 3 attempts)"
    assert len(fake.requests) == 3 and len(sleeps) == 2
    assert sleeps[1] >= sleeps[0] - 0.5  # exponential, give or take the jitter


def test_429_waits_what_retry_after_asks(make_settings, fake, astronaut):
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    fake.fail_next(status(429, {"Retry-After": "1"}))
    akool = AkoolUpstream(make_settings(), sleep=sleep)

    faces = akool.detect(astronaut, max_side=1280)

    assert len(faces) == 1
    assert waits == [1.0]
    first, second = fake.requests
    assert second.at - first.at >= 0.9  # the server saw the retry a second later
    akool.close()


def test_retry_after_as_http_date(akool, fake, sleeps, astronaut):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    fake.fail_next(status(503, {"Retry-After": when}))

    akool.detect(astronaut, max_side=1280)

    [wait] = sleeps
    assert 0.5 < wait <= 2.0  # the date has whole seconds


def test_retry_after_beyond_the_cap_fails_at_once(akool, fake, sleeps, astronaut):
    fake.fail_next(status(429, {"Retry-After": "3600"}))

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.RATE_LIMITED
    assert raised.value.retry_after == 3600 > MAX_RETRY_AFTER
    assert raised.value.detail.endswith("(Retry-After: 3600 s) (gave up after 1 attempt)")
    assert len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(("code", "failure"), [(400, Failure.REJECTED), (404, Failure.HTTP_STATUS)])
def test_client_errors_other_than_429_are_not_retried(akool, fake, sleeps, astronaut, code, failure):
    fake.fail_next(status(code))

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is failure
    assert raised.value.detail == f"upstream akool answered HTTP {code}: HTTP {code}"
    assert len(fake.requests) == 1 and sleeps == []


def test_unreachable_upstream_is_retried_then_reported(make_settings, closed_port, sleeps, astronaut):
    akool = AkoolUpstream(make_settings(upstream_url=f"http://127.0.0.1:{closed_port}"), sleep=sleeps.append)

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.UNREACHABLE
    assert raised.value.detail.startswith("upstream akool could not be reached (ConnectError: ")
    assert raised.value.detail.endswith("(gave up after 3 attempts)")
    assert len(sleeps) == 2
    akool.close()


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1", 1.0),
        (" 120 ", 120.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # already past: retry now
        ("soon", None),
        ("-5", None),
        (None, None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds
