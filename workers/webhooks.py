"""Webhook delivery: the worker side of the outbox (`facequeue/lifecycle/outbox.py`).

`deliver_event` (the Celery task `deliver`, queue "webhooks") claims one attempt, POSTs the signed
body to the address the SSRF guard checked and pinned, logs the attempt, then settles the event
or schedules the next attempt with a countdown. Delivery is at least once; the webhook-id never
changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import EmptyWebhookSecretError

from db import deliveries, tenants
from db.models import WebhookDelivery, WebhookEvent, utcnow
from facequeue.core.enums import EventState
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from facequeue.core.ssrf import check_url
from facequeue.core.webhooks import default_secret, signature_headers
from facequeue.lifecycle.outbox import publish_after_commit
from facequeue.plumbing.broker import WEBHOOK_TIME_LIMIT_MARGIN
from facequeue.plumbing.sessions import session_scope
from workers.metrics import WEBHOOK_ATTEMPTS
from workers.pinned_http import Deadline, describe_transport_error, new_pinned_client, send_pinned
from workers.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

RESPONSE_EXCERPT_BYTES = 1024
MAX_RETRY_AFTER_SECONDS = 86400.0  # a receiver may slow its retries down, not park them indefinitely
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410
# Retrying cannot help: the URL is malformed or the SSRF guard refuses where it points.
PERMANENT_ERRORS = frozenset({ErrorCode.INVALID_URL, ErrorCode.URL_FORBIDDEN})


@dataclass(frozen=True)
class AttemptOutcome:
    latency_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds the receiver asked for (429, 503)
    permanent: bool = False  # an error no retry can fix

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def metric_outcome(self) -> str:
        """The outcome label of facequeue_webhook_attempts_total (workers/metrics.py says what each means)."""
        if self.succeeded:
            return "success"
        if self.status_code is not None:
            return "http_error"
        return "refused" if self.permanent else "no_response"


def deliver_event(event_id: str, attempts: int, settings: Settings) -> None:
    """Make attempt `attempts + 1` of the event, unless the message is stale."""
    lease = settings.webhook_timeout + WEBHOOK_TIME_LIMIT_MARGIN
    with session_scope() as session:
        webhook_event = deliveries.claim_attempt(session, event_id, attempts, lease)
        if webhook_event is None:
            log.info("webhook_skipped", event_id=event_id, attempts=attempts, reason="stale or settled")
            return
        secrets = signing_secrets(session, webhook_event.tenant_id, settings)
    outcome = attempt_delivery(webhook_event, secrets, settings)
    WEBHOOK_ATTEMPTS.labels(outcome.metric_outcome).inc()
    with session_scope() as session:
        state = settle_attempt(session, webhook_event, outcome, settings.webhook_retry_schedule)
    log.info(
        "webhook_attempt",
        event_id=event_id,
        attempt=webhook_event.attempts,
        status_code=outcome.status_code,
        error=outcome.error,
        state=state,
    )


def signing_secrets(session: Session, tenant_id: str | None, settings: Settings) -> list[str]:
    """Read at send time, so a rotation applies to retries too; a tenant's current secret comes first,
    then the previous one during its grace period."""
    if tenant_id is None:
        return [default_secret(settings)]
    tenant = tenants.get_tenant(session, tenant_id)
    return tenants.signing_secrets(tenant, utcnow()) if tenant else []


def attempt_delivery(webhook_event: WebhookEvent, secrets: Sequence[str], settings: Settings) -> AttemptOutcome:
    """One signed POST; every failure (signing, SSRF guard, network, deadline) becomes an outcome, never raises."""
    if not secrets:
        return AttemptOutcome(latency_ms=0, error="no webhook secret is configured for the tenant", permanent=True)
    try:
        headers = {
            "Content-Type": "application/json",
            **signature_headers(webhook_event.id, utcnow(), webhook_event.body, secrets),
        }
    except (ValueError, EmptyWebhookSecretError) as exc:
        return AttemptOutcome(
            latency_ms=0, error=f"a webhook secret is not a valid whsec_ secret: {exc}", permanent=True
        )
    started = time.perf_counter()
    deadline = Deadline(settings.webhook_timeout)
    try:
        target = check_url(webhook_event.url, settings)
        content = webhook_event.body.encode()
        with (
            new_pinned_client() as client,
            closing(send_pinned(client, target, settings, deadline, "POST", content, headers)) as response,
        ):
            body = _read_excerpt(response, deadline)
    except (TaskError, httpx.HTTPError) as exc:
        return AttemptOutcome(
            latency_ms=_ms_since(started),
            error=_error_text(exc, webhook_event.url, deadline, settings),
            permanent=isinstance(exc, TaskError) and exc.code in PERMANENT_ERRORS,
        )
    retry_after = None
    if response.status_code in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"), utcnow())
    return AttemptOutcome(
        latency_ms=_ms_since(started), status_code=response.status_code, response_body=body, retry_after=retry_after
    )


def _read_excerpt(response: httpx.Response, deadline: Deadline) -> str:
    """The body's first KB for the log; the status already decided the outcome, so a cut-off body is kept as is."""
    excerpt = bytearray()
    try:
        with deadline.watch(response):
            for chunk in response.iter_bytes(RESPONSE_EXCERPT_BYTES):
                excerpt += chunk
                if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                    break
    except (httpx.HTTPError, TaskError):
        pass
    # Postgres text holds no NUL character: a receiver's binary reply is logged with U+FFFD in its place
    return excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")


def _error_text(exc: TaskError | httpx.HTTPError, url: str, deadline: Deadline, settings: Settings) -> str:
    if deadline.expired:
        return f"no response within {settings.webhook_timeout:g} s"
    if isinstance(exc, TaskError):
        return f"{exc.code}: {exc.detail}"
    return f"{describe_transport_error(exc)} {url}"


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def next_step(
    outcome: AttemptOutcome, failures_in_round: int, schedule: Sequence[float]
) -> tuple[EventState, float | None]:
    """The event's state after an attempt, and the seconds until the next attempt (None: there is none)."""
    if outcome.succeeded:
        return EventState.SUCCEEDED, None
    if outcome.status_code == GONE:
        return EventState.DISABLED, None
    if outcome.permanent or failures_in_round > len(schedule):
        return EventState.FAILED, None
    delay = schedule[failures_in_round - 1]
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER_SECONDS))
    return EventState.PENDING, delay


def settle_attempt(
    session: Session, webhook_event: WebhookEvent, outcome: AttemptOutcome, schedule: Sequence[float]
) -> EventState:
    """Log the attempt, move the event on and schedule its next attempt (published after commit)."""
    now = utcnow()
    state, delay = next_step(outcome, webhook_event.attempts - webhook_event.round_start, schedule)
    next_attempt_at = now + timedelta(seconds=delay) if delay is not None else None
    delivery = WebhookDelivery(
        event_id=webhook_event.id,
        task_id=webhook_event.task_id,
        tenant_id=webhook_event.tenant_id,
        url=webhook_event.url,
        attempt=webhook_event.attempts,
        status_code=outcome.status_code,
        error=outcome.error,
        response_body=outcome.response_body,
        latency_ms=outcome.latency_ms,
        created_at=now,
        next_attempt_at=next_attempt_at,
    )
    if not deliveries.record_attempt(session, delivery, state):
        return state  # a redelivery re-armed the event meanwhile; its own attempt decides what follows
    if state == EventState.DISABLED:
        deliveries.disable_endpoint(session, webhook_event.tenant_id, webhook_event.url, GONE)
    elif delay is not None:
        publish_after_commit(session, webhook_event.id, webhook_event.attempts, delay)
    return state
