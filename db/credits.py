"""Credits: a tenant's balance, and each task's reservation against it."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from db.models import DetectTask, Tenant
from facequeue.enums import CreditState


def reserve(session: Session, tenant_id: str, cost: int) -> bool:
    """Take `cost` from the balance only if it covers it: the check and the debit are one UPDATE,
    so concurrent submits can never overdraw. Unlimited tenants (credits NULL) always pass."""
    result = session.execute(
        update(Tenant)
        .where(Tenant.id == tenant_id, (Tenant.credits.is_(None)) | (Tenant.credits >= cost))
        .values(credits=Tenant.credits - cost)
    )
    return result.rowcount == 1


def close(session: Session, task_id: str, state: CreditState, refund: int) -> bool:
    """reserved -> settled/refunded exactly once, giving `refund` credits back."""
    closed = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.credit_state == CreditState.RESERVED)
        .values(credit_state=state)
        .returning(DetectTask.tenant_id)
    ).first()
    if closed is None:
        return False
    if refund > 0:
        session.execute(update(Tenant).where(Tenant.id == closed[0]).values(credits=Tenant.credits + refund))
    return True
