"""Page cursors (GET /v1/deliveries, GET /v1/detect) are opaque and sealed for one tenant and one list
(api/services/cursors.py): real API, real Postgres, two tenants."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from db import tenants
from db.models import WebhookDelivery, WebhookEvent
from facequeue.core.settings import Settings
from facequeue.plumbing.sessions import session_scope
from tests.test_tenants import new_key

pytestmark = pytest.mark.integration

MALFORMED = {"code": "validation_error", "message": "cursor is malformed", "field": "cursor"}


@pytest.fixture
def two_tenants(database: str) -> Iterator[tuple[TestClient, TestClient]]:
    from api.app import create_app

    app = create_app(Settings(auth="on"))
    with TestClient(app) as alice, TestClient(app) as bob:
        for client in (alice, bob):
            client.headers["Authorization"] = f"Bearer {new_key(f'cursors-{uuid.uuid4().hex[:10]}')}"
        yield alice, bob


def tenant_of(client: TestClient) -> str:
    with session_scope() as session:
        _, tenant = tenants.find_active_key(session, client.headers["Authorization"].removeprefix("Bearer "))
        return tenant.id


def attempts_logged(client: TestClient, count: int) -> list[int]:
    """`count` delivery attempts in the tenant's log, as the outbox records them; their row ids."""
    tenant_id = tenant_of(client)
    with session_scope() as session:
        rows = []
        for attempt in range(1, count + 1):
            event_id = f"msg_{uuid.uuid4().hex}"
            task_id = uuid.uuid4().hex
            session.add(
                WebhookEvent(
                    id=event_id, task_id=task_id, tenant_id=tenant_id, type="detect_task.succeeded",
                    url="https://hooks.example.com/", body="{}", state="succeeded", attempts=1,
                )
            )  # fmt: skip
            row = WebhookDelivery(
                event_id=event_id, task_id=task_id, tenant_id=tenant_id, url="https://hooks.example.com/",
                attempt=attempt, status_code=200, latency_ms=5,
            )  # fmt: skip
            session.add(row)
            rows.append(row)
        session.flush()
        return [row.id for row in rows]


def error(response) -> tuple[int, dict]:
    return response.status_code, response.json()["error"]


def tampered(cursor: str) -> str:
    middle = len(cursor) // 2
    return cursor[:middle] + ("A" if cursor[middle] != "A" else "B") + cursor[middle + 1 :]


def test_a_deliveries_cursor_names_no_row_and_pages_only_its_tenant(two_tenants) -> None:
    alice, bob = two_tenants
    ids = attempts_logged(alice, 3)
    attempts_logged(bob, 1)
    first = alice.get("/v1/deliveries", params={"limit": 2}).json()
    cursor = first["next_cursor"]
    # opaque: the row id the next page starts below, encrypted (a 12-byte nonce, then the id, then a 16-byte tag)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert len(raw) == 12 + len(str(ids[1])) + 16 and raw[12:-16] != str(ids[1]).encode()
    second = alice.get("/v1/deliveries", params={"limit": 2, "cursor": cursor}).json()
    assert [item["attempt"] for item in first["items"] + second["items"]] == [3, 2, 1]
    assert second["next_cursor"] is None
    # the same position sealed twice reads differently: nothing to compare across pages or tenants
    assert alice.get("/v1/deliveries", params={"limit": 2}).json()["next_cursor"] != cursor
    # another tenant's cursor, a tampered one, one of another list: the invalid-cursor error
    assert error(bob.get("/v1/deliveries", params={"cursor": cursor})) == (422, MALFORMED)
    assert error(alice.get("/v1/deliveries", params={"cursor": tampered(cursor)})) == (422, MALFORMED)
    assert error(alice.get("/v1/detect", params={"cursor": cursor})) == (422, MALFORMED)
    # the old form, base64 of a row id, is refused too
    old_form = base64.urlsafe_b64encode(str(ids[1]).encode()).decode()
    assert error(alice.get("/v1/deliveries", params={"cursor": old_form})) == (422, MALFORMED)


def test_a_task_list_cursor_is_sealed_for_its_tenant_too(two_tenants) -> None:
    alice, bob = two_tenants
    submitted = [
        alice.post("/v1/detect", json={"url": f"https://e.com/{n}.jpg"}).json()["detect_task_id"] for n in range(3)
    ]
    bob.post("/v1/detect", json={"url": "https://e.com/b.jpg"})
    first = alice.get("/v1/detect", params={"limit": 2}).json()
    cursor = first["next_cursor"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert submitted[1].encode() not in raw
    second = alice.get("/v1/detect", params={"limit": 2, "cursor": cursor}).json()
    assert [task["detect_task_id"] for task in first["items"] + second["items"]] == submitted[::-1]
    assert second["next_cursor"] is None
    assert error(bob.get("/v1/detect", params={"cursor": cursor})) == (422, MALFORMED)
    assert error(alice.get("/v1/detect", params={"cursor": tampered(cursor)})) == (422, MALFORMED)
    assert error(alice.get("/v1/deliveries", params={"cursor": cursor})) == (422, MALFORMED)
