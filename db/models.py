"""Every table: detect tasks, tenants and their keys, service flags, batches, the webhook outbox and log; the tables
holding face embeddings (pgvector) are in db/face_models.py."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text, TypeDecorator, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from facequeue.core.enums import CreditState, EventState, Queue, TaskStatus


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz, read back in UTC: Postgres answers in its TimeZone setting (initdb takes the host's, so the
    Postgres `facequeue serve` starts may not be in UTC), and the API shows every time in UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_task_id() -> str:
    # 18 random bytes -> 24 URL-safe characters: unguessable, and safe in paths and query strings.
    return url_safe_id(18)


def url_safe_id(random_bytes: int) -> str:
    """`secrets.token_urlsafe`, drawn again when it starts with "-": a command line would read such an id as an
    option (`facequeue cancel -T3...`)."""
    while (value := secrets.token_urlsafe(random_bytes)).startswith("-"):
        pass
    return value


class Base(DeclarativeBase):
    pass


class DetectTask(Base):
    __tablename__ = "detect_tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_task_id)
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    kind: Mapped[str | None] = mapped_column(String(8))  # image | video; null until known
    source_url: Mapped[str | None] = mapped_column(Text)
    upload_key: Mapped[str | None] = mapped_column(String(255))  # storage key of uploaded bytes
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    queue: Mapped[str] = mapped_column(String(32), default=Queue.DEFAULT)
    api: Mapped[str | None] = mapped_column(String(16))  # SubmitApi; null on tasks stored before it was kept

    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.QUEUED)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_msg: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    detector: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    timings: Mapped[dict[str, float]] = mapped_column(JSONB, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The run that claimed it: worker name and pool process, so a dead run is re-queued at once (reaper.py)
    worker_name: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None] = mapped_column(Integer)

    batch_id: Mapped[str | None] = mapped_column(String(32))
    batch_position: Mapped[int | None] = mapped_column(Integer)  # submit order inside its batch
    item_name: Mapped[str | None] = mapped_column(Text)  # a batch item's own name (file, URL), echoed in results
    detect_id: Mapped[str | None] = mapped_column(String(32))  # crun's handle for a finished detection
    callback_url: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[int] = mapped_column(Integer, default=0)  # credits reserved on submit
    credit_state: Mapped[str] = mapped_column(String(16), default=CreditState.NONE)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # until when the frames kept for previews stay stored (FACEQUEUE_PREVIEW_TTL); null: none are kept
    previews_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_detect_tasks_status_created", "status", "created_at"),
        Index("ix_detect_tasks_created_id", "created_at", "id"),
        Index("uq_detect_tasks_detect_id", "detect_id", unique=True),
        Index("ix_detect_tasks_batch_position", "batch_id", "batch_position"),
        Index("ix_detect_tasks_previews_until", "previews_until"),  # the reaper's scan for expired previews
        # retention (db/retention.py): each tenant's final tasks past its retention, and uploads not deleted yet
        Index("ix_detect_tasks_tenant_finished", "tenant_id", "finished_at"),
        Index(
            "ix_detect_tasks_upload_kept",
            "status",
            postgresql_where=upload_key.is_not(None),
        ),
        # the fair dispatcher's scan: held (unpublished) batch items per tenant, oldest first
        Index("ix_detect_tasks_held", "queue", "status", "published_at", "tenant_id"),
        # One idempotency key per tenant; coalesce so tasks without a tenant are scoped together.
        Index(
            "uq_detect_tasks_tenant_idempotency",
            func.coalesce(tenant_id, ""),
            idempotency_key,
            unique=True,
        ),
    )


def new_tenant_id() -> str:
    return "tn_" + secrets.token_urlsafe(12)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_tenant_id)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    credits: Mapped[int | None] = mapped_column(Integer)  # None: unlimited
    rate_limit: Mapped[str | None] = mapped_column(String(64))  # e.g. "10/second"; None: the default
    webhook_url: Mapped[str | None] = mapped_column(Text)  # default endpoint for tasks without callback_url
    webhook_secrets: Mapped[list[str]] = mapped_column(JSONB, default=list)  # current first
    webhook_secret_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the secrets after the first sign until then (None: no end)
    webhook_previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # how long its final tasks are kept (None: FACEQUEUE_RETENTION)
    retention_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: url_safe_id(12))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the whole key
    rate_limit: Mapped[str | None] = mapped_column(String(64))  # overrides the tenant's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ServiceFlag(Base):
    """Operator switches shared by every API process (e.g. maintenance)."""

    __tablename__ = "service_flags"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: "bt_" + secrets.token_urlsafe(15))
    tenant_id: Mapped[str | None] = mapped_column(String(64), index=True)
    total: Mapped[int] = mapped_column(Integer)
    callback_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # every item final
    persons: Mapped[bool] = mapped_column(Boolean, default=False)  # batch-wide person ids (db/batch_persons.py)


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction that made its task (or batch) final."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the webhook-id header
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=EventState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # attempts made before the current round of retries (a redelivery starts a new round)
    round_start: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # message for the next attempt sent
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_webhook_events_state_next_attempt", "state", "next_attempt_at"),)


class WebhookDelivery(Base):
    """The delivery log: one row per attempt."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), index=True)
    task_id: Mapped[str] = mapped_column(String(32), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)  # the first KB
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    # GET /v1/deliveries: one tenant's attempts, newest first (coalesce: tenant-less ones are scoped together)
    __table_args__ = (Index("ix_webhook_deliveries_tenant_recent", func.coalesce(tenant_id, ""), id),)


class DisabledWebhookEndpoint(Base):
    """(tenant, URL) pairs that answered 410 Gone."""

    __tablename__ = "disabled_webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int] = mapped_column(Integer)
    disabled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    # coalesce: endpoints of tasks without a tenant are scoped together (plain UNIQUE lets NULLs repeat)
    __table_args__ = (
        Index("uq_disabled_webhook_endpoints_tenant_url", func.coalesce(tenant_id, ""), url, unique=True),
    )


# The tables holding face embeddings live in their own module; importing it here puts them in Base.metadata
# wherever the models are imported (Alembic, the legacy import).
from db import face_models  # noqa: E402, F401
