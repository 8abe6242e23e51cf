"""`facequeue tenants list|show|set-webhook|rotate-secret`, run as a real process against the test Postgres; the
API sees what the operator changed. Errors are one line and a non-zero exit status, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from db import tenants
from db.models import utcnow
from facequeue.plumbing.sessions import session_scope
from tests.conftest import REPO_ROOT
from tests.test_migrations import empty_database
from tests.test_tenants import bearer, make_client, new_key

pytestmark = pytest.mark.integration


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facequeue", "tenants", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    return line


@pytest.fixture
def tenant(database: str) -> tuple[str, str]:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    return name, new_key(name)


def stored_secrets(name: str) -> list[str]:
    with session_scope() as session:
        return tenants.signing_secrets(tenants.find_tenant(session, name), utcnow())


def test_list_shows_every_tenant_with_its_keys_and_endpoint(tenant) -> None:
    name, _key = tenant
    other = f"cli-{uuid.uuid4().hex[:10]}"
    new_key(other), new_key(other)
    assert cli("set-webhook", other, "https://hooks.example/other").returncode == 0
    listing = cli("list")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split("│")[1].strip(): line for line in listing.stdout.splitlines() if "│ cli-" in line}
    assert f"│ {name} " in rows[name] and "https://hooks.example/other" in rows[other]
    cells = {tenant_name: [cell.strip() for cell in row.split("│")[1:-1]] for tenant_name, row in rows.items()}
    assert cells[name][2:5] == ["unlimited", "1", "-"]
    assert cells[other][2:5] == ["unlimited", "2", "https://hooks.example/other"]


def test_set_webhook_is_what_the_tenant_sees(tenant) -> None:
    name, key = tenant
    result = cli("set-webhook", name, "https://hooks.example/fq")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"tenant {name}: webhook endpoint https://hooks.example/fq"
    with make_client() as api:
        assert api.get("/v1/webhook-endpoint", headers=bearer(key)).json()["url"] == "https://hooks.example/fq"
        shown = cli("show", name)
        assert shown.returncode == 0 and "webhook endpoint" in shown.stdout
        assert "https://hooks.example/fq" in shown.stdout and name in shown.stdout
        assert cli("set-webhook", name, "--clear").returncode == 0
        assert api.get("/v1/webhook-endpoint", headers=bearer(key)).json()["url"] is None


def test_rotate_secret_prints_the_new_one_and_the_old_one_keeps_signing(tenant) -> None:
    name, key = tenant
    before = cli("show", name, "--secret")
    assert before.returncode == 0 and before.stdout.strip() == stored_secrets(name)[0]
    rotated = cli("rotate-secret", name)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    assert new.startswith("whsec_") and new != before.stdout.strip()
    assert stored_secrets(name) == [new, before.stdout.strip()]
    assert "the previous one also signs until" in rotated.stderr
    with make_client() as api:
        assert api.get("/v1/webhook-endpoint/secret", headers=bearer(key)).json() == {"secret": new}
        view = api.get("/v1/webhook-endpoint", headers=bearer(key)).json()
    assert view["previous_secret_expires_at"] is not None
    shown = cli("show", name).stdout
    assert "previous secret signs until" in shown and view["previous_secret_expires_at"][:19] in shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nobody-here"), "error: no tenant named 'nobody-here' (`facequeue tenants list` shows them)"),
        (
            ("rotate-secret", "nobody-here"),
            "error: no tenant named 'nobody-here' (`facequeue tenants list` shows them)",
        ),
        (("set-webhook", "{name}", "ftp://hooks.example/"), "error: 'ftp://hooks.example/': Invalid URL format"),
        (("set-webhook", "{name}"), "error: give either a URL or --clear"),
        (("set-webhook", "{name}", "https://hooks.example/", "--clear"), "error: give either a URL or --clear"),
    ],
)
def test_mistakes_are_one_line_and_exit_1(tenant, args: tuple[str, ...], message: str) -> None:
    name, _key = tenant
    result = cli(*(arg.format(name=name) for arg in args))
    assert one_error_line(result) == message


def test_a_database_that_was_never_migrated_is_one_line(services) -> None:
    with empty_database("never_migrated") as url:
        line = one_error_line(cli("list", FACEQUEUE_DATABASE_URL=url))
    assert line == (
        f'error: cannot use the database at {url}: relation "api_keys" does not exist (is it migrated? run '
        "`facequeue migrate`)"
    )
