"""Tenants and their API keys: every query of their tables."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "fq_"
DISPLAY_PREFIX_LENGTH = 10  # "fq_" + 7 characters: enough to tell keys apart in a listing


def hash_key(key: str) -> str:
    # Keys carry 32 random bytes, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    # Standard Webhooks secrets are standard base64 after the prefix (not the URL-safe alphabet)
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def get_tenant(session: Session, tenant_id: str | None) -> Tenant | None:
    return session.get(Tenant, tenant_id) if tenant_id else None


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name, webhook_secrets=[new_webhook_secret()])
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant: Tenant, rate_limit: str | None = None) -> tuple[ApiKey, str]:
    """A new key for the tenant; the plain key is returned once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        tenant_id=tenant.id, prefix=key[:DISPLAY_PREFIX_LENGTH], key_hash=hash_key(key), rate_limit=rate_limit
    )
    session.add(record)
    session.flush()
    return record, key


def find_active_key(session: Session, key: str) -> tuple[ApiKey, Tenant] | None:
    row = session.execute(
        select(ApiKey, Tenant)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row else None


def key_is_active(session: Session, key_id: str) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))) is not None


def list_keys(session: Session) -> Sequence[tuple[ApiKey, Tenant]]:
    rows = session.execute(
        select(ApiKey, Tenant).join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(ApiKey.created_at)
    ).all()
    return [(key, tenant) for key, tenant in rows]


def revoke_key(session: Session, id_or_prefix: str) -> int:
    result = session.execute(
        update(ApiKey)
        .where((ApiKey.id == id_or_prefix) | (ApiKey.prefix == id_or_prefix), ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount


def any_key_exists(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).limit(1)) is not None


def find_tenant(session: Session, name: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.name == name))


def list_tenants(session: Session) -> Sequence[Tenant]:
    return session.scalars(select(Tenant).order_by(Tenant.name)).all()


def active_key_counts(session: Session) -> dict[str, int]:
    """Unrevoked API keys per tenant id (tenants without one are absent)."""
    rows = session.execute(
        select(ApiKey.tenant_id, func.count()).where(ApiKey.revoked_at.is_(None)).group_by(ApiKey.tenant_id)
    ).all()
    return {tenant_id: count for tenant_id, count in rows}


def signing_secrets(tenant: Tenant, now: datetime) -> list[str]:
    """The secrets that sign the tenant's webhooks now: the current one, then the previous one until its
    grace period ends."""
    expires = tenant.webhook_previous_secret_expires_at
    if expires is not None and expires <= now:
        return list(tenant.webhook_secrets[:1])
    return list(tenant.webhook_secrets)


def previous_secret_expiry(tenant: Tenant, now: datetime) -> datetime | None:
    """When the previous secret stops signing; None when only the current one signs."""
    return tenant.webhook_previous_secret_expires_at if len(signing_secrets(tenant, now)) > 1 else None


def rotate_webhook_secret(session: Session, tenant: Tenant, grace: timedelta) -> str | None:
    """Make a new current secret; the current one becomes the previous and keeps signing for `grace`
    (an older previous one stops at once). Returns the new secret, or None when another rotation of
    the same tenant won the race (its row changed since `tenant` was read)."""
    now = utcnow()
    secret = new_webhook_secret()
    current = list(tenant.webhook_secrets[:1])
    rotated = session.execute(
        update(Tenant)
        .where(Tenant.id == tenant.id, _same_moment(Tenant.webhook_secret_rotated_at, tenant.webhook_secret_rotated_at))
        .values(
            webhook_secrets=[secret, *current],
            webhook_secret_rotated_at=now,
            webhook_previous_secret_expires_at=now + grace if current else None,
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(tenant)
    return secret if rotated.rowcount == 1 else None


def _same_moment(column, moment: datetime | None):
    return column.is_(None) if moment is None else column == moment
