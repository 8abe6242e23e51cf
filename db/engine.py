"""Engines and session factories, built from the settings they are given (the caller keeps one per process)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.postgres import postgres_engine
from facequeue.settings import Settings
from facequeue.storage import PRIVATE_FILE_MODE, ensure_data_dir

# The database did not answer (down, restarting, frozen past a timeout, SQLite locked), or its connection
# broke: nothing was decided, and the same call may succeed in a moment. Callers retry or answer 503.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def build_engine(settings: Settings) -> Engine:
    ensure_embedded_database(settings)
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return postgres_engine(url, settings)


def ensure_embedded_database(settings: Settings) -> None:
    """Without FACEQUEUE_DATABASE_URL: the SQLite file, created empty and private (0600) before SQLite opens it
    with the umask's mode (0644); it holds webhook secrets. SQLite gives its -wal and -shm files the same mode."""
    if settings.database_url is not None:
        return
    ensure_data_dir(settings)
    os.close(os.open(settings.embedded_database_path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))


def _tune_sqlite(dbapi_connection, _record) -> None:
    # WAL lets the API read while a worker writes; busy_timeout waits out short write locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def build_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
