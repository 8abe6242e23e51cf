"""Engines and session factories, built from the settings they are given (the caller keeps one per process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from db.postgres import postgres_engine
from facequeue.core.settings import Settings

# The database did not answer (down, restarting, frozen past a timeout), or its connection
# broke: nothing was decided, and the same call may succeed in a moment. Callers retry or answer 503.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)


def build_engine(settings: Settings) -> Engine:
    return postgres_engine(settings.resolved_database_url, settings)


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
