"""Tenants, API keys, credits and operator flags: every query of their tables."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import ApiKey, DetectTask, ServiceFlag, Tenant, utcnow

KEY_PREFIX = "fq_"
DISPLAY_PREFIX_LENGTH = 10  # "fq_" + 7 characters: enough to tell keys apart in a listing


def hash_key(key: str) -> str:
    # Keys carry 32 random bytes, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def new_webhook_secret() -> str:
    # Standard Webhooks secrets are standard base64 after the prefix (not the URL-safe alphabet)
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


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


def reserve_credits(session: Session, tenant_id: str, cost: int) -> bool:
    """Take `cost` from the balance only if it covers it: the check and the debit are one UPDATE,
    so concurrent submits can never overdraw. Unlimited tenants (credits NULL) always pass."""
    result = session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id, (Tenant.credits.is_(None)) | (Tenant.credits >= cost))
        .values(credits=Tenant.credits - cost)
    )
    return result.rowcount == 1


def close_credits(session: Session, task_id: str, state: str, refund: int) -> bool:
    """reserved -> settled/refunded exactly once, giving `refund` credits back."""
    closed = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.credit_state == "reserved")
        .values(credit_state=state)
        .returning(DetectTask.tenant_id)
    ).first()
    if closed is None:
        return False
    if refund > 0:
        session.execute(update(Tenant).where(Tenant.id == closed[0]).values(credits=Tenant.credits + refund))
    return True


def get_flag(session: Session, name: str) -> str | None:
    flag = session.get(ServiceFlag, name)
    return flag.value if flag else None


def set_flag(session: Session, name: str, value: str) -> None:
    flag = session.get(ServiceFlag, name)
    if flag is None:
        session.add(ServiceFlag(name=name, value=value))
    else:
        flag.value = value
