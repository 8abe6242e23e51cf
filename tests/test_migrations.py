"""Alembic migrations apply and roll back on Postgres."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.migrate import alembic_config, upgrade_to_head
from db.models import Base, DetectTask
from tests.conftest import create_database, drop_database

EXPECTED_COLUMNS = {column.name for column in Base.metadata.tables["detect_tasks"].columns}


def _assert_schema_matches_models(url: str) -> None:
    engine = create_engine(url)
    try:
        columns = {column["name"] for column in inspect(engine).get_columns("detect_tasks")}
        assert columns == EXPECTED_COLUMNS
        _assert_idempotency_key_unique_without_tenant(engine)
    finally:
        engine.dispose()


def _assert_idempotency_key_unique_without_tenant(engine) -> None:
    """The unique index must hold even with a NULL tenant (plain UNIQUE treats NULLs as distinct)."""
    with Session(engine) as session:
        session.add(DetectTask(id="a", idempotency_key="k", params={}, timings={}))
        session.commit()
        session.add(DetectTask(id="b", idempotency_key="k", params={}, timings={}))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        session.query(DetectTask).delete()
        session.commit()


def _roundtrip(url: str) -> None:
    upgrade_to_head(url)
    _assert_schema_matches_models(url)
    command.downgrade(alembic_config(url), "base")
    engine = create_engine(url)
    try:
        assert "detect_tasks" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    upgrade_to_head(url)
    _assert_schema_matches_models(url)


@contextmanager
def empty_database(purpose: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database on the test Postgres, this process's own (like the test
    database), dropped afterwards."""
    name = f"facequeue_{purpose}_{os.getpid()}"
    try:
        yield create_database(name)
    finally:
        drop_database(name)


@pytest.mark.integration
def test_postgres_upgrade_downgrade(services) -> None:
    with empty_database("migration_check") as url:
        _roundtrip(url)


@pytest.mark.integration
def test_collections_tables_and_their_vector_index_match_the_models(services) -> None:
    with empty_database("collections_check") as url:
        upgrade_to_head(url)
        engine = create_engine(url)
        try:
            inspector = inspect(engine)
            for table in ("face_collections", "collection_faces"):
                columns = {column["name"] for column in inspector.get_columns(table)}
                assert columns == {column.name for column in Base.metadata.tables[table].columns}
            with engine.connect() as connection:
                definition = connection.exec_driver_sql(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_collection_faces_embedding'"
                ).scalar_one()
            assert "USING hnsw (embedding vector_cosine_ops)" in definition
            assert "m='16'" in definition and "ef_construction='64'" in definition
        finally:
            engine.dispose()


SYSTEM_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _postgres_without_pgvector() -> str | None:
    """The machine's own Postgres on 5432 when it runs and has no pgvector (Debian's, as CI machines have)."""
    import psycopg

    try:
        with psycopg.connect(SYSTEM_POSTGRES, connect_timeout=2) as connection:
            found = connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    except psycopg.OperationalError:
        return None
    return None if found else SYSTEM_POSTGRES


@pytest.mark.integration
def test_migrate_on_a_postgres_without_pgvector_says_how_to_get_it(tmp_path) -> None:
    import subprocess
    import sys

    import psycopg

    admin = _postgres_without_pgvector()
    if admin is None:
        pytest.skip("needs a Postgres without pgvector on 127.0.0.1:5432 (Debian's, as on CI machines)")
    name = f"facequeue_no_pgvector_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {
            **os.environ,
            "FACEQUEUE_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
            "FACEQUEUE_DATA_DIR": str(tmp_path),
        }
        done = subprocess.run(
            [sys.executable, "-m", "facequeue", "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1
        assert "this Postgres has no pgvector extension, which face collections need" in done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
