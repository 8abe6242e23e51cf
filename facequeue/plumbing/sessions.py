"""The process's one engine and session factory, built from its settings on first use."""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db.engine import build_engine, build_sessionmaker, transaction
from facequeue.core.settings import get_settings


@lru_cache
def get_engine() -> Engine:
    return build_engine(get_settings())


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return build_sessionmaker(get_engine())


def session_scope() -> AbstractContextManager[Session]:
    """A session that commits on success and rolls back on error."""
    return transaction(get_sessionmaker())
