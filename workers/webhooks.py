"""Webhook delivery: the outbox written with a task's final status, and the worker task that sends it.

- `queue_task_event` (from `on_task_final`) adds the event row in the transaction that made the
  task final; its message is published only after that transaction commits (an `after_commit`
  hook), and `republish_due_deliveries` (the reaper) re-sends messages never published or lost.
- `deliver` (Celery, queue "webhooks") claims one attempt, POSTs the signed body to the address
  the SSRF guard checked and pinned, logs the attempt, then settles the event or schedules the
  next attempt with a countdown. Delivery is at least once; the webhook-id never changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog
from celery import shared_task
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import EmptyWebhookSecretError

from db import webhooks as webhook_db
from db.engine import session_scope
from db.models import Batch, DetectTask, Tenant, utcnow
from db.webhooks import EventState, WebhookDelivery, WebhookEvent
from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings, get_settings
from facequeue.webhooks import (
    batch_event,
    default_secret,
    encode_event,
    new_webhook_id,
    signature_headers,
    task_event,
)
from workers.celery_app import WEBHOOK_TASK_NAME, WEBHOOK_TIME_LIMIT_MARGIN, publish_webhook
from workers.media.fetch import Deadline, describe_transport_error, new_pinned_client, send_pinned
from workers.media.ssrf import check_url
from workers.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

UNPUBLISHED_GRACE_SECONDS = 30.0  # publishing follows the commit at once; give it time before stepping in
RESPONSE_EXCERPT_BYTES = 1024
MAX_RETRY_AFTER_SECONDS = 86400.0  # a receiver may slow its retries down, not park them indefinitely
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410
# Retrying cannot help: the URL is malformed or the SSRF guard refuses where it points.
PERMANENT_ERRORS = frozenset({ErrorCode.INVALID_URL, ErrorCode.URL_FORBIDDEN})
_PENDING_PUBLISHES = "facequeue.webhook_publishes"  # key in Session.info


# --- outbox ------------------------------------------------------------------------------------


def queue_task_event(session: Session, task_id: str, settings: Settings) -> WebhookEvent | None:
    """Add the event of a task that just became final, to be published once the session commits."""
    webhook_event = new_task_event(session, task_id, settings)
    if webhook_event is not None and webhook_event.state == EventState.PENDING:
        publish_after_commit(session, webhook_event.id, 0)
    return webhook_event


def new_task_event(session: Session, task_id: str, settings: Settings) -> WebhookEvent | None:
    """The event row for a final task: to its callback_url, else its tenant's webhook_url; None if neither.

    Batch items send nothing of their own: their batch sends one event when all of them are final.
    """
    # Columns, not the ORM object: the final status was written by an UPDATE the identity map hasn't seen.
    task = session.execute(
        select(
            DetectTask.tenant_id,
            DetectTask.callback_url,
            DetectTask.batch_id,
            DetectTask.status,
            DetectTask.error_code,
            DetectTask.error_msg,
            DetectTask.finished_at,
        ).where(DetectTask.id == task_id)
    ).one()
    if task.batch_id is not None:
        return None
    payload = task_event(task_id, task.status, task.error_code, task.error_msg, task.finished_at or utcnow(), settings)
    return _new_event(session, task_id, task.tenant_id, task.callback_url, payload)


def queue_batch_event(session: Session, batch: Batch, counts: dict[str, int], settings: Settings) -> None:
    """The one event of a batch whose items are all final (subject id: the batch id)."""
    webhook_event = _new_event(
        session, batch.id, batch.tenant_id, batch.callback_url, batch_event(batch, counts, settings)
    )
    if webhook_event is not None and webhook_event.state == EventState.PENDING:
        publish_after_commit(session, webhook_event.id, 0)


def _new_event(
    session: Session, subject_id: str, tenant_id: str | None, callback_url: str | None, payload: dict
) -> WebhookEvent | None:
    tenant = _tenant(session, tenant_id)
    url = callback_url or (tenant.webhook_url if tenant else None)
    if not url:
        return None
    disabled = webhook_db.endpoint_disabled(session, tenant_id, url)
    webhook_event = WebhookEvent(
        id=new_webhook_id(),
        task_id=subject_id,
        tenant_id=tenant_id,
        type=payload["type"],
        url=url,
        body=encode_event(payload),
        state=EventState.DISABLED if disabled else EventState.PENDING,
        attempts=0,
        round_start=0,
        next_attempt_at=None if disabled else utcnow(),
        created_at=utcnow(),
    )
    session.add(webhook_event)
    return webhook_event


def redeliver(session: Session, event_id: str) -> None:
    """Send the event again now, same webhook-id, with a fresh round of retries; published after commit."""
    attempts = webhook_db.rearm_event(session, event_id)
    publish_after_commit(session, event_id, attempts)


def republish_due_deliveries(session: Session, settings: Settings) -> int:
    """For the reaper: publish again the attempts whose message was never sent or may be lost.

    The messages go out when `session` next commits; duplicates are harmless (attempts are fenced).
    """
    due = webhook_db.events_due_for_republish(session, UNPUBLISHED_GRACE_SECONDS, settings.republish_queued_after)
    for webhook_event in due:
        publish_after_commit(session, webhook_event.id, webhook_event.attempts)
    return len(due)


def publish_after_commit(session: Session, event_id: str, attempts: int, countdown: float = 0.0) -> None:
    """Publish the attempt message only once the rows it refers to are committed (dropped on rollback)."""
    session.info.setdefault(_PENDING_PUBLISHES, []).append((event_id, attempts, countdown))


@event.listens_for(Session, "after_commit")
def _publish_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING_PUBLISHES, None)
    if not pending:
        return
    settings = get_settings()
    for event_id, attempts, countdown in pending:
        _publish(session, event_id, attempts, countdown, settings)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING_PUBLISHES, None)


def _publish(committed: Session, event_id: str, attempts: int, countdown: float, settings: Settings) -> None:
    # Never raise: the caller's commit already succeeded, and republish_due_deliveries recovers a lost publish.
    try:
        publish_webhook(event_id, attempts, countdown, settings)
        # after_commit may not use the committed session for SQL; a short one of its own records the publish.
        with Session(committed.get_bind()) as session, session.begin():
            webhook_db.mark_published(session, event_id, attempts)
    except Exception:
        log.exception("webhook_publish_failed", event_id=event_id, attempts=attempts)


# --- delivery ----------------------------------------------------------------------------------


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


# shared_task, not get_celery().task: the API imports this module (via on_task_final) without building the app.
@shared_task(name=WEBHOOK_TASK_NAME)
def deliver(event_id: str, attempts: int) -> None:
    deliver_event(event_id, attempts, get_settings())


def deliver_event(event_id: str, attempts: int, settings: Settings) -> None:
    """Make attempt `attempts + 1` of the event, unless the message is stale."""
    lease = settings.webhook_timeout + WEBHOOK_TIME_LIMIT_MARGIN
    with session_scope() as session:
        webhook_event = webhook_db.claim_attempt(session, event_id, attempts, lease)
        if webhook_event is None:
            log.info("webhook_skipped", event_id=event_id, attempts=attempts, reason="stale or settled")
            return
        secrets = signing_secrets(session, webhook_event.tenant_id, settings)
    outcome = attempt_delivery(webhook_event, secrets, settings)
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
    """Read at send time, so a rotation applies to retries too; a tenant's current secret comes first."""
    if tenant_id is None:
        return [default_secret(settings)]
    tenant = _tenant(session, tenant_id)
    return list(tenant.webhook_secrets) if tenant else []


def _tenant(session: Session, tenant_id: str | None) -> Tenant | None:
    return session.get(Tenant, tenant_id) if tenant_id else None


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
    return excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")


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
    if not webhook_db.record_attempt(session, delivery, state):
        return state  # a redelivery re-armed the event meanwhile; its own attempt decides what follows
    if state == EventState.DISABLED:
        webhook_db.disable_endpoint(session, webhook_event.tenant_id, webhook_event.url, GONE)
    elif delay is not None:
        publish_after_commit(session, webhook_event.id, webhook_event.attempts, delay)
    return state
