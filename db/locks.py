"""Exclusive locks across every process of a deployment, taken without waiting (the reaper's pass holds one).

A Postgres session-level advisory lock on a connection of its own. Session-level, because the job under
it commits several times (a transaction-level lock would end at the first commit); its own connection,
because a Session hands its connection back to the pool at each commit. Postgres drops the lock when the
connection closes, so a process that dies mid-job never leaves it held. Advisory locks are per database:
every process of one deployment shares one database, and so one key space.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, func, select


@contextmanager
def try_exclusive(engine: Engine, key: int) -> Iterator[bool]:
    """Hold lock `key` for the block if no other process holds it: yields whether this one got it."""
    with engine.connect() as connection:
        held = bool(connection.scalar(select(func.pg_try_advisory_lock(key))))
        connection.commit()  # the lock outlives the transaction; an open one would sit idle for the whole job
        try:
            yield held
        finally:
            if held:
                _unlock(connection, key)


def _unlock(connection: Connection, key: int) -> None:
    try:
        connection.scalar(select(func.pg_advisory_unlock(key)))
        connection.commit()
    except Exception:
        connection.invalidate()  # closed, not pooled: Postgres drops the lock with the connection
        raise
