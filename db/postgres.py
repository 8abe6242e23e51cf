"""The Postgres engine, which never waits on the server without a bound.

- connecting: libpq's `connect_timeout` (FACEQUEUE_DATABASE_CONNECT_TIMEOUT);
- a statement: the server's `statement_timeout` (FACEQUEUE_DATABASE_TIMEOUT) cancels it, and the
  connection stays usable;
- a reply from a server that stopped answering (SIGSTOP, a paused VM, a hung disk): the kernel still
  acknowledges every byte, so neither TCP keepalives nor `statement_timeout` end that wait. The client
  gives up REPLY_MARGIN after the statement timeout and closes the connection, which SQLAlchemy takes
  as a disconnect: it drops the pool and the caller gets an OperationalError (the API answers 503);
- a free pooled connection: `pool_timeout` (FACEQUEUE_DATABASE_TIMEOUT).

After a failed connect or a reply that never came, new connections fail at once for FAIL_FAST_SECONDS:
a burst of requests then gets its 503s at once instead of each waiting out the connect timeout, and one
attempt per FAIL_FAST_SECONDS still notices the server's return.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.errors import _WaitTimeout  # what psycopg's own wait raises once its timeout passes
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from facequeue.core.settings import Settings

# Past the statement timeout, so a live server's own cancel (which keeps the connection) arrives first.
REPLY_MARGIN = 0.5
FAIL_FAST_SECONDS = 1.0


def postgres_engine(url: str, settings: Settings) -> Engine:
    statement_ms = int(settings.database_timeout * 1000)
    # libpq `options` of the URL are kept, with the statement timeout appended
    options = " ".join(filter(None, [make_url(url).query.get("options"), f"-c statement_timeout={statement_ms}"]))
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=settings.database_timeout,
        connect_args={"connect_timeout": settings.database_connect_timeout, "options": options},
    )
    event.listen(engine, "do_connect", _ConnectionGuard(settings.database_timeout + REPLY_MARGIN).connect)
    return engine


class ReplyBoundedConnection(psycopg.Connection):
    """A psycopg connection that stops waiting for a reply after `reply_timeout` seconds.

    psycopg (3.3) runs every query, fetch, commit and rollback through `Connection.wait`, whose
    `timeout` its own callers leave unset; here it defaults to `reply_timeout`."""

    reply_timeout: float | None = None
    on_reply_timeout: Callable[[], None] | None = None  # the engine's: fail fast for a moment

    def wait(self, gen: Any, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if timeout is not None or self.reply_timeout is None:  # a caller's own deadline is the caller's to handle
            return super().wait(gen, *args, timeout=timeout, **kwargs)
        try:
            return super().wait(gen, *args, timeout=self.reply_timeout, **kwargs)
        except _WaitTimeout as error:
            self.pgconn.finish()  # the protocol stopped mid-exchange: the connection can't be used again
            if self.on_reply_timeout is not None:
                self.on_reply_timeout()
            raise psycopg.OperationalError(f"no reply from the database within {self.reply_timeout:g}s") from error


class _ConnectionGuard:
    """Opens the engine's connections, failing at once while the server was just found unreachable."""

    def __init__(self, reply_timeout: float) -> None:
        self.reply_timeout = reply_timeout
        self._unreachable_until = 0.0  # monotonic; a float assignment is atomic, no lock needed

    def connect(self, _dialect: Any, _record: Any, cargs: tuple, cparams: dict) -> ReplyBoundedConnection:
        if time.monotonic() < self._unreachable_until:
            raise psycopg.OperationalError("the database did not answer a moment ago; not tried again yet")
        try:
            connection = ReplyBoundedConnection.connect(*cargs, **cparams)
        except psycopg.OperationalError:
            self.unreachable()
            raise
        connection.reply_timeout = self.reply_timeout
        connection.on_reply_timeout = self.unreachable
        return connection

    def unreachable(self) -> None:
        self._unreachable_until = time.monotonic() + FAIL_FAST_SECONDS
