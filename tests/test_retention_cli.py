"""FACEQUEUE_RETENTION's format, and an operator's `facequeue tenants set-retention` and `facequeue reap`, run as
real processes against the test Postgres and data directory."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from db import tenants
from db.models import DetectTask, Tenant, utcnow
from facequeue.core.settings import Settings, get_settings
from facequeue.core.storage import get_storage, task_prefix
from facequeue.plumbing.sessions import session_scope
from tests.conftest import REPO_ROOT
from tests.test_tenants_cli import cli, one_error_line


@pytest.mark.parametrize(
    ("written", "seconds"), [("30d", 2_592_000), ("720h", 2_592_000), ("15m", 900), ("90s", 90), ("3600", 3600)]
)
def test_retention_is_a_whole_number_with_an_optional_unit(written: str, seconds: int) -> None:
    assert Settings(_env_file=None, retention=written).retention == seconds


def test_retention_defaults_to_30_days_and_refuses_what_it_cannot_read() -> None:
    assert Settings(_env_file=None).retention == 30 * 86400
    for bad in ("30 days", "1.5h", "0", "-5d", "d"):
        with pytest.raises(ValidationError, match="is not a duration such as 30d, 720h, 15m or 3600"):
            Settings(_env_file=None, retention=bad)


@pytest.fixture
def tenant_name(database: str) -> str:
    name = f"ret-{uuid.uuid4().hex[:10]}"
    with session_scope() as session:
        tenants.get_or_create_tenant(session, name)
    return name


def stored_retention(name: str) -> int | None:
    with session_scope() as session:
        return tenants.find_tenant(session, name).retention_seconds


def shown_retention(name: str) -> str:
    shown = cli("show", name)
    assert shown.returncode == 0, shown.stderr
    [line] = [line for line in shown.stdout.splitlines() if line.strip().startswith("retention")]
    return line.split(None, 1)[1].strip()


@pytest.mark.integration
def test_set_retention_shows_and_clears(tenant_name: str) -> None:
    assert shown_retention(tenant_name) == "30d (default)"
    done = cli("set-retention", tenant_name, "36h")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"tenant {tenant_name}: final tasks kept 36h"
    assert stored_retention(tenant_name) == 36 * 3600 and shown_retention(tenant_name) == "36h"
    cleared = cli("set-retention", tenant_name, "--clear")
    assert cleared.stderr.strip() == f"tenant {tenant_name}: final tasks kept 30d (default)"
    assert stored_retention(tenant_name) is None


@pytest.mark.integration
def test_set_retention_refuses_in_one_line(tenant_name: str) -> None:
    assert one_error_line(cli("set-retention", tenant_name, "2 weeks")) == (
        "error: '2 weeks' is not a duration such as 30d, 720h, 15m or 3600 (seconds)"
    )
    assert one_error_line(cli("set-retention", tenant_name)) == "error: give either a duration or --clear"
    assert one_error_line(cli("set-retention", "no-such-tenant", "1d")) == (
        "error: no tenant named 'no-such-tenant' (`facequeue tenants list` shows them)"
    )
    assert stored_retention(tenant_name) is None


@pytest.mark.integration
def test_reap_purges_by_the_tenants_retention(tenant_name: str, clean_state) -> None:
    assert cli("set-retention", tenant_name, "1h").returncode == 0
    storage = get_storage(get_settings())
    with session_scope() as session:
        tenant_id = tenants.find_tenant(session, tenant_name).id
        other = Tenant(name=f"ret-{uuid.uuid4().hex[:10]}", webhook_secrets=[])
        session.add(other)
        session.flush()
        ids = {}
        for owner in (tenant_id, other.id):
            ids[owner] = uuid.uuid4().hex[:24]
            session.add(
                DetectTask(
                    id=ids[owner], tenant_id=owner, status="succeeded", finished_at=utcnow() - timedelta(hours=2)
                )
            )
            storage.put_bytes(f"{task_prefix(ids[owner])}/crops/0-0.jpg", b"a face")
    reaped = subprocess.run(
        [sys.executable, "-m", "facequeue", "reap"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert reaped.returncode == 0, reaped.stderr
    assert "'tasks_purged': 1" in reaped.stderr  # the report goes to the console (stderr)
    with session_scope() as session:
        assert session.get(DetectTask, ids[tenant_id]) is None and session.get(DetectTask, ids[other.id]) is not None
    assert not storage.path(task_prefix(ids[tenant_id])).exists()
    assert storage.path(f"{task_prefix(ids[other.id])}/crops/0-0.jpg").is_file()
