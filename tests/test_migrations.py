"""Alembic migrations apply and roll back on Postgres."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.migrate import alembic_config, upgrade_to_head
from db.models import Base, DetectTask
from tests.conftest import PG_ADMIN_DSN

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
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.integration
def test_postgres_upgrade_downgrade(services) -> None:
    with empty_database("migration_check") as url:
        _roundtrip(url)
