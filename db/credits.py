"""Credits: a tenant's balance, and each task's reservation against it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import DetectTask, Tenant
from facequeue.core.enums import CreditState, TaskStatus


@dataclass(frozen=True)
class TopUp:
    reserved: int  # what the task had reserved before the top-up
    covered: bool  # whether its reservation now covers the cost asked for


def reserve(session: Session, tenant_id: str, cost: int) -> bool:
    """Take `cost` from the balance only if it covers it: the check and the debit are one UPDATE,
    so concurrent submits can never overdraw. Unlimited tenants (credits NULL) always pass, and their row
    is only read: writing it would lock it until commit, and every submit and every finished task of a busy
    tenant then queued on that one row (fuzzing saw batch submits pass the 2 s statement timeout)."""
    result = session.execute(
        update(Tenant).where(Tenant.id == tenant_id, Tenant.credits >= cost).values(credits=Tenant.credits - cost)
    )
    if result.rowcount == 1:
        return True
    return session.scalar(select(Tenant.credits.is_(None)).where(Tenant.id == tenant_id)) is True


def top_up(session: Session, task_id: str, attempt: int, cost: int) -> TopUp | None:
    """Raise the reservation of the run `attempt` of a task to `cost`: the difference comes off the balance
    through `reserve`, and the task records the new amount. None when the run no longer owns the task;
    a task without credits (no tenant) or already reserving enough is covered as it is. The caller commits."""
    owned = (DetectTask.id == task_id, DetectTask.status == TaskStatus.PROCESSING, DetectTask.attempts == attempt)
    task = session.execute(select(DetectTask.tenant_id, DetectTask.cost, DetectTask.credit_state).where(*owned)).first()
    if task is None:
        return None
    if task.credit_state != CreditState.RESERVED or task.cost >= cost:
        return TopUp(task.cost, covered=True)
    if not reserve(session, task.tenant_id, cost - task.cost):
        return TopUp(task.cost, covered=False)
    # The reservation the balance paid for, unless a cancel closed it meanwhile: then the debit is undone.
    raised = session.execute(
        update(DetectTask)
        .where(*owned, DetectTask.credit_state == CreditState.RESERVED, DetectTask.cost == task.cost)
        .values(cost=cost)
    )
    if raised.rowcount != 1:
        session.rollback()
        return None
    return TopUp(task.cost, covered=True)


def close(session: Session, task_id: str, state: CreditState, used: int) -> bool:
    """reserved -> settled/refunded exactly once: `used` credits (at most the reservation) are charged and
    the rest given back. The reservation is read by the same UPDATE, so a top-up committed just before
    is refunded too."""
    closed = session.execute(
        update(DetectTask)
        .where(DetectTask.id == task_id, DetectTask.credit_state == CreditState.RESERVED)
        .values(credit_state=state)
        .returning(DetectTask.tenant_id, DetectTask.cost)
    ).first()
    if closed is None:
        return False
    refund = closed.cost - min(closed.cost, used)
    if refund > 0:  # an unlimited balance (NULL) stays as it is, and its row unlocked (see reserve)
        session.execute(
            update(Tenant)
            .where(Tenant.id == closed.tenant_id, Tenant.credits.is_not(None))
            .values(credits=Tenant.credits + refund)
        )
    return True
