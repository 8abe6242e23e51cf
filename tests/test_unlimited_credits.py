"""An unlimited tenant's balance row is never written, so never locked: fuzzing one busy tenant saw batch submits
wait on it past the 2 s statement timeout (a 503) while finishing tasks held it. Real Postgres."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from db import credits
from db.models import Tenant
from facequeue.core.enums import CreditState
from facequeue.plumbing.sessions import get_sessionmaker, session_scope
from tests.test_tenants import make_client, new_key

pytestmark = pytest.mark.integration


def tenant_of(name: str) -> Tenant:
    with session_scope() as session:
        tenant = session.query(Tenant).filter_by(name=name).one()
        session.expunge(tenant)
        return tenant


def reserve_without_waiting(tenant_id: str, cost: int) -> bool:
    """reserve() in a transaction of its own that gives up at once on a row lock (LockNotAvailable)."""
    with get_sessionmaker()() as session:
        session.execute(text("SET LOCAL lock_timeout = '100ms'"))
        reserved = credits.reserve(session, tenant_id, cost)
        session.rollback()
        return reserved


def test_unlimited_reserves_and_refunds_leave_the_tenant_row_unlocked(clean_state) -> None:
    new_key("unlimited-busy")  # credits None: unlimited
    tenant = tenant_of("unlimited-busy")
    with get_sessionmaker()() as holding:  # a submit whose transaction is still open
        assert credits.reserve(holding, tenant.id, 3) is True
        assert reserve_without_waiting(tenant.id, 5) is True
        holding.rollback()

    key = new_key("unlimited-busy")
    with make_client() as client:
        task_id = client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}, headers={"x-api-key": key})
        task_id = task_id.json()["detect_task_id"]
    with get_sessionmaker()() as finishing:  # a task refunded, its transaction still open
        assert credits.close(finishing, task_id, CreditState.REFUNDED, used=0) is True
        assert reserve_without_waiting(tenant.id, 5) is True
        finishing.rollback()
    assert tenant_of("unlimited-busy").credits is None


def test_a_limited_balance_is_still_checked_and_debited_in_one_update(clean_state) -> None:
    new_key("limited", credits=4)
    tenant = tenant_of("limited")
    with session_scope() as session:
        assert credits.reserve(session, tenant.id, 3) is True
        assert credits.reserve(session, tenant.id, 2) is False
    assert tenant_of("limited").credits == 1
