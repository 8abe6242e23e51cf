"""Importing an old embedded data dir's SQLite file into Postgres (db/legacy_sqlite_import.py), from a file made by
the last SQLite release itself (tests/data/legacy_sqlite/facequeue.db; tests/data/make_legacy_sqlite.py says how)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import select, text

from db import batches, deliveries, flags, tasks, tenants
from db.legacy_sqlite_import import LegacyImportError, import_legacy_sqlite
from db.models import Tenant, WebhookDelivery
from facequeue.plumbing.sessions import get_engine, session_scope
from tests.conftest import TEST_DB_DSN, TEST_STATE_TABLES

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parent / "data" / "legacy_sqlite" / "facequeue.db"

# What tests/data/make_legacy_sqlite.py made: 2 tenants; 3 keys (acme's second revoked); the maintenance flag
# (on, then off); acme's photo (succeeded, 2 faces, webhook 200) and non-image (failed); globex's photo (webhook
# 410: endpoint disabled) and a batch of 2 photos (webhook 200).
ROWS = {
    "detect_tasks": 5,
    "tenants": 2,
    "api_keys": 3,
    "service_flags": 1,
    "batches": 1,
    "webhook_events": 3,
    "webhook_deliveries": 3,
    "disabled_webhook_endpoints": 1,
}
ACME, GLOBEX = "tn_loY9zF7FmqrMsfXx", "tn_GlqNPQJTNEEMFIwq"
# The plain keys the script printed: they exist only in this fixture.
ACME_KEY = "fq_iNmH6Erl06qXoMdEs0XVnU1l2X7gGMaAq6GSR2qp_W4"
ACME_REVOKED_KEY = "fq_ZoHYLN1eJn552BoLRDlgwIoygN4o0nqI7urOCAtcXpg"
GLOBEX_KEY = "fq_dpS0Y-e7_IJqF-tlLe8sKwXsUFUyiYkQJvgtDM2A1NQ"
PHOTO_TASK, FAILED_TASK, GONE_TASK = "_jh5LeC3EWInwwcu1BR9U483", "aUYoFXSoWrYbncs8l5InkUMn", "-7BwVltH3x6t5ZJdFJbj4jnW"
BATCH = "bt__E6axewRAcWIre1XDyWm"
GONE_URL = "http://127.0.0.1:41027/gone"
FIRST_IMPORT = (
    "5 tasks, 2 tenants, 3 API keys, 1 service flag, 1 batch, 3 webhook events, 3 webhook deliveries, "
    "1 disabled webhook endpoint"
)


def _delete_fixture_rows(connection: psycopg.Connection) -> None:
    for table in TEST_STATE_TABLES:  # as clean_state does
        connection.execute(f"DELETE FROM {table}")
    # tenants and their keys (ON DELETE CASCADE) stay between tests: only the fixture's, by id or by name
    connection.execute("DELETE FROM tenants WHERE id = ANY(%s) OR name = ANY(%s)", ([ACME, GLOBEX], ["acme", "globex"]))


@pytest.fixture
def legacy_file(clean_state: None, tmp_path: Path) -> Iterator[Path]:
    """A copy of the fixture (SQLite may add -wal and -shm files beside a WAL file it opens, even read-only), into
    a database without the fixture's rows; the maintenance flag is put back as it was afterwards."""
    with psycopg.connect(TEST_DB_DSN) as connection:
        flag = connection.execute("SELECT value, updated_at FROM service_flags WHERE name = 'maintenance'").fetchone()
        connection.execute("DELETE FROM service_flags WHERE name = 'maintenance'")
        _delete_fixture_rows(connection)
    copy = tmp_path / "data" / "facequeue.db"
    copy.parent.mkdir()
    shutil.copyfile(FIXTURE, copy)
    yield copy
    with psycopg.connect(TEST_DB_DSN) as connection:
        _delete_fixture_rows(connection)
        connection.execute("DELETE FROM service_flags WHERE name = 'maintenance'")
        if flag is not None:
            connection.execute(
                "INSERT INTO service_flags (name, value, updated_at) VALUES ('maintenance', %s, %s)", flag
            )


@pytest.fixture
def local_time_not_utc() -> Iterator[None]:
    """This process's local time zone is India's (UTC+05:30): SQLite's naive timestamps must still be read as UTC."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sqlite_row(path: Path, query: str, *args: object) -> tuple:
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute(query, args).fetchone()
    finally:
        connection.close()


def _fixture_rows_in_postgres() -> dict[str, int]:
    """Per table, how many of the fixture's rows (by primary key) Postgres holds; other tests' tenants stay."""
    keys = {"service_flags": "name"}
    connection = sqlite3.connect(f"{FIXTURE.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        ids = {
            table: [row[0] for row in connection.execute(f"SELECT {keys.get(table, 'id')} FROM {table}")]
            for table in ROWS
        }
    finally:
        connection.close()
    with get_engine().connect() as postgres:
        return {
            table: postgres.scalar(
                text(f"SELECT count(*) FROM {table} WHERE {keys.get(table, 'id')} = ANY(:ids)"), {"ids": ids[table]}
            )
            for table in ROWS
        }


def test_every_row_is_copied_once_and_reads_back(legacy_file: Path, local_time_not_utc: None) -> None:
    before = _sha256(legacy_file)

    first = import_legacy_sqlite(legacy_file, get_engine())

    assert dict(first.copied) == ROWS
    assert dict(first.already_there) == dict.fromkeys(ROWS, 0)
    assert first.summary() == f"imported from {legacy_file}: {FIRST_IMPORT} (0 rows already there)"
    assert _fixture_rows_in_postgres() == ROWS

    with session_scope() as session:
        found = tenants.find_active_key(session, ACME_KEY)
        assert found is not None
        key, acme = found
        assert (acme.id, acme.name, acme.credits, acme.retention_seconds) == (ACME, "acme", 999, 30 * 24 * 3600)
        assert len(acme.webhook_secrets) == 2  # rotated: the current secret, then the previous one
        assert acme.webhook_secret_rotated_at == datetime(2026, 12, 7, 8, 8, 24, 391276, tzinfo=UTC)
        assert tenants.find_active_key(session, ACME_REVOKED_KEY) is None
        key, globex = tenants.find_active_key(session, GLOBEX_KEY)
        assert (key.rate_limit, globex.credits, globex.webhook_url) == (
            "5/second",
            None,
            "http://127.0.0.1:41027/tenant-endpoint",
        )
        active = tenants.active_key_counts(session)  # other tests' tenants may have keys too
        assert (active[ACME], active[GLOBEX]) == (1, 1)
        assert flags.get_flag(session, flags.MAINTENANCE_FLAG) == "off"

        photo = tasks.get_task(session, PHOTO_TASK, ACME)
        stored_result, stored_created = _sqlite_row(
            legacy_file, "SELECT result, created_at FROM detect_tasks WHERE id = ?", PHOTO_TASK
        )
        assert photo.result == json.loads(stored_result)
        assert len(photo.result["faces_obj"]["0"]["region"]) == 2
        assert photo.created_at == datetime.fromisoformat(stored_created).replace(tzinfo=UTC)
        assert photo.created_at.tzinfo is not None
        assert (photo.status, photo.cost, photo.credit_state) == ("succeeded", 5, "settled")
        assert tasks.find_by_idempotency_key(session, ACME, "legacy-photo-1").id == PHOTO_TASK

        failed = tasks.get_task(session, FAILED_TASK, ACME)
        assert (failed.status, failed.error_code, failed.result, failed.credit_state) == (
            "failed",
            "unsupported_media",
            None,
            "refunded",
        )
        # SQL NULL stays NULL (the JSON type would have written JSON null)
        assert session.scalar(text("SELECT result IS NULL FROM detect_tasks WHERE id = :id"), {"id": FAILED_TASK})

        batch = batches.get_batch(session, BATCH, GLOBEX)
        assert (batch.total, batch.finished_at is not None) == (2, True)
        assert batches.status_counts(session, BATCH) == {
            "queued": 0,
            "processing": 0,
            "succeeded": 2,
            "failed": 0,
            "canceled": 0,
        }
        assert [item.item_name for item in batches.items_in_order(session, BATCH)] == ["first.jpg", "second.jpg"]

        assert [(event.type, event.state) for event in deliveries.events_for_task(session, PHOTO_TASK)] == [
            ("detect_task.succeeded", "succeeded")
        ]
        assert [(d.id, d.status_code) for d in deliveries.deliveries_for_task(session, GONE_TASK)] == [(2, 410)]
        assert deliveries.endpoint_disabled(session, GLOBEX, GONE_URL)

        # the serial ids went past the imported ones: a new attempt doesn't collide with delivery 3
        new = WebhookDelivery(event_id="msg_new", task_id=PHOTO_TASK, url="http://x", attempt=2, latency_ms=1)
        session.add(new)
        session.flush()
        assert new.id > 3

    second = import_legacy_sqlite(legacy_file, get_engine())

    assert dict(second.copied) == dict.fromkeys(ROWS, 0)
    assert dict(second.already_there) == ROWS
    assert second.summary() == f"nothing new in {legacy_file}: its {FIRST_IMPORT} were already there"
    assert _fixture_rows_in_postgres() == ROWS
    assert _sha256(legacy_file) == before


def test_what_postgres_cannot_hold_becomes_a_replacement_character(legacy_file: Path) -> None:
    # SQLite holds a NUL in text (a webhook endpoint's reply) and an escaped NUL or lone surrogate in JSON text;
    # Postgres text and JSONB refuse both
    with sqlite3.connect(legacy_file) as connection:
        connection.execute("UPDATE webhook_deliveries SET response_body = 'ok' || char(0) || '!' WHERE id = 1")
        connection.execute(
            "UPDATE detect_tasks SET timings = ?, params = ? WHERE id = ?",
            ('{"total": 1.5}', '{"name": "a\\u0000b", "other": "\\ud800", "emoji": "\\ud83d\\ude00"}', PHOTO_TASK),
        )
    connection.close()

    assert import_legacy_sqlite(legacy_file, get_engine()).total_copied == sum(ROWS.values())

    with session_scope() as session:
        assert [d.response_body for d in deliveries.deliveries_for_task(session, PHOTO_TASK)] == ["ok\ufffd!"]
        photo = tasks.get_task(session, PHOTO_TASK, ACME)
        assert (photo.params, photo.timings) == (
            {"name": "a\ufffdb", "other": "\ufffd", "emoji": "\U0001f600"},
            {"total": 1.5},
        )


def test_a_file_at_another_revision_is_refused(legacy_file: Path) -> None:
    _sqlite(legacy_file, "UPDATE alembic_version SET version_num = '0010'")
    assert _refusal(legacy_file) == (
        f"{legacy_file} is at database revision 0010, and only revision 0011 (the last release with SQLite) can be "
        "imported: run `facequeue migrate` of that release on its data dir first (with FACEQUEUE_DATABASE_URL "
        "unset), then import again"
    )
    assert _fixture_rows_in_postgres() == dict.fromkeys(ROWS, 0)


def test_a_file_that_is_not_sqlite_is_refused(legacy_file: Path) -> None:
    legacy_file.write_text("facequeue data, but not a database\n")

    assert _refusal(legacy_file) == f"{legacy_file} is not a SQLite database file, so it can't be imported"

    damaged = legacy_file.with_name("damaged.db")
    damaged.write_bytes(FIXTURE.read_bytes()[:8192])  # its header and schema, but not its tables' pages
    assert _refusal(damaged) == (
        f"{damaged} could not be read as a facequeue SQLite database: it is damaged, or not that file"
    )

    missing = legacy_file.with_name("absent.db")
    assert _refusal(missing) == f"{missing}: no such file (the SQLite database is facequeue.db in the old data dir)"


def test_a_sqlite_file_without_a_revision_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    _sqlite(other, "CREATE TABLE notes (body TEXT)")
    assert _refusal(other) == (
        f"{other} is a SQLite file without a facequeue database revision: it is not a facequeue.db, or its release "
        "never migrated it; run that release's `facequeue migrate` on its data dir first"
    )


def test_a_clash_with_a_different_row_imports_nothing(legacy_file: Path) -> None:
    with session_scope() as session:
        session.add(Tenant(id="tn_already_here", name="acme", webhook_secrets=[]))

    assert _refusal(legacy_file) == (
        f"nothing was imported from {legacy_file}: one of its tenants has the same name or key as a different "
        "tenant already in the database; import it into a new, empty database"
    )
    with get_engine().connect() as connection:
        assert connection.scalars(select(Tenant.id).where(Tenant.name.in_(["acme", "globex"]))).all() == [
            "tn_already_here"
        ]
    assert _fixture_rows_in_postgres() == dict.fromkeys(ROWS, 0)


def _refusal(path: Path) -> str:
    """The message the import of `path` is refused with."""
    with pytest.raises(LegacyImportError) as refused:
        import_legacy_sqlite(path, get_engine())
    return str(refused.value)


def _sqlite(path: Path, statement: str) -> None:
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(statement)
