"""The delivery rules as pure functions: Retry-After parsing, what follows an attempt, signature checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from facequeue.core.enums import EventState
from facequeue.core.webhooks import WebhookVerificationError, encode_event, signature_headers, verify
from tests.webhooks.conftest import new_secret
from workers.retry_after import parse_retry_after
from workers.webhooks import MAX_RETRY_AFTER_SECONDS, AttemptOutcome, next_step

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SCHEDULE = (5.0, 300.0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        (format_datetime(NOW - timedelta(seconds=90), usegmt=True), 0.0),  # a date in the past: retry at once
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_takes_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


def failure(status_code: int | None = 500, **fields) -> AttemptOutcome:
    return AttemptOutcome(latency_ms=1, status_code=status_code, **fields)


def test_next_step_follows_the_schedule_then_gives_up() -> None:
    assert next_step(failure(), 1, SCHEDULE) == (EventState.PENDING, 5.0)
    assert next_step(failure(302), 2, SCHEDULE) == (EventState.PENDING, 300.0)
    assert next_step(failure(), 3, SCHEDULE) == (EventState.FAILED, None)
    assert next_step(failure(204), 1, SCHEDULE) == (EventState.SUCCEEDED, None)
    assert next_step(failure(410), 1, SCHEDULE) == (EventState.DISABLED, None)
    refused = failure(None, error="url_forbidden: address 10.0.0.1 is private", permanent=True)
    assert next_step(refused, 1, SCHEDULE) == (EventState.FAILED, None)


def test_retry_after_only_ever_lengthens_the_wait_up_to_a_day() -> None:
    assert next_step(failure(503, retry_after=60.0), 1, SCHEDULE) == (EventState.PENDING, 60.0)
    assert next_step(failure(429, retry_after=1.0), 1, SCHEDULE) == (EventState.PENDING, 5.0)
    assert next_step(failure(429, retry_after=1e9), 1, SCHEDULE) == (EventState.PENDING, MAX_RETRY_AFTER_SECONDS)


def test_verify_checks_secret_body_and_timestamp() -> None:
    secret, body = new_secret(), encode_event({"type": "detect_task.failed", "data": {}})
    headers = signature_headers("msg_1", datetime.now(UTC), body, [secret])
    assert verify(body.encode(), headers, secret) == {"type": "detect_task.failed", "data": {}}
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, new_secret())
    stale = signature_headers("msg_1", datetime.now(UTC) - timedelta(minutes=10), body, [secret])
    with pytest.raises(WebhookVerificationError):  # its message is standardwebhooks' wording
        verify(body, stale, secret)


def test_every_secret_signs_during_a_rotation() -> None:
    current, previous = new_secret(), new_secret()
    body = encode_event({"type": "detect_task.succeeded"})
    headers = signature_headers("msg_2", datetime.now(UTC), body, [current, previous])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(body, headers, current) == verify(body, headers, previous)
