"""The database the operator commands (keys, tenants, maintenance, reap) change, found where the service keeps
it or refused in one line: never an empty one made in whatever folder the command was run from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from facequeue.cli.child_processes import EmbeddedStackError
from facequeue.cli.console import fail
from facequeue.cli.embedded_stack import embedded_stack
from facequeue.core.embedded_paths import postgres_dir
from facequeue.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

MIGRATE_HINT = "run `facequeue migrate` to create it, or set FACEQUEUE_DATA_DIR to the service's data directory"


def require_data_dir(settings: Settings) -> None:
    """The embedded data directory (FACEQUEUE_DATA_DIR, relative to the working directory unless absolute) must
    exist already; the message says where it was looked for."""
    where = settings.data_dir.absolute()
    if not settings.data_dir.is_dir():
        fail(f"no facequeue data directory at {where}{_relative_note(settings.data_dir)}", MIGRATE_HINT)


def require_database(settings: Settings) -> None:
    """Without FACEQUEUE_DATABASE_URL the database is the data directory's embedded Postgres, which must exist."""
    if settings.database_url is not None:
        return
    require_data_dir(settings)
    if not (postgres_dir(settings.data_dir) / "PG_VERSION").is_file():
        fail(
            f"no facequeue database in {settings.data_dir.absolute()}{_relative_note(settings.data_dir)}", MIGRATE_HINT
        )


def _relative_note(data_dir: Path) -> str:
    return "" if data_dir.is_absolute() else f" (FACEQUEUE_DATA_DIR={data_dir} is relative to the working directory)"


@contextmanager
def operator_session(*, broker: bool = False) -> Iterator[Session]:
    """A session on the service's existing database; a database that can't be used is one line and exit status 1.
    The embedded servers are serve's when it runs, else started for the command (Redis only when `broker`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from facequeue.plumbing.sessions import session_scope

    settings = get_settings()
    require_database(settings)
    try:
        with embedded_stack(settings, redis=broker), session_scope() as session:
            yield session
    except EmbeddedStackError as error:
        fail(str(error))
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        url = redact(settings.resolved_database_url)
        fail(f"cannot use the database at {url}: {reason} (is it migrated? run `facequeue migrate`)")


def redact(url: str) -> str:
    """A database URL fit to print: its password hidden, a socket folder (host=/path) as it is written."""
    from urllib.parse import unquote

    from sqlalchemy.engine import make_url

    return unquote(make_url(url).render_as_string(hide_password=True))
