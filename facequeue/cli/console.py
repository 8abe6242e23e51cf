"""The CLI's consoles, its one-line errors, and the startup noise and request lines `serve` hides unless --verbose."""

from __future__ import annotations

import logging
import warnings
from typing import NoReturn

import structlog
import typer
from rich.console import Console
from rich.text import Text

from facequeue.core.settings import get_settings

# stderr, so stdout carries only what a script reads: a new key, a secret, a result's JSON. A line is never
# broken at the terminal's width: a path or an id stays whole, to be copied or matched.
console = Console(stderr=True, soft_wrap=True)
# what a command answers (a summary, a table)
output = Console(soft_wrap=True)


def announce(event: str, text: str, level: str = "info", **fields: object) -> None:
    """A running service's message: `text` (rich markup) on the console, or with FACEQUEUE_LOG_FORMAT=json
    the log line `event` with `fields`, so that every line the service writes is JSON."""
    if get_settings().log_format == "json":
        getattr(structlog.get_logger("facequeue.cli"), level)(event, **fields)
    else:
        console.print(text)


def note(text: str) -> None:
    """A message on stderr, as it is: no markup, since paths, ids and server messages may hold brackets."""
    console.print(text, markup=False, highlight=False)


def show(text: str) -> None:
    """A line of a command's answer, on stdout, as it is."""
    output.print(text, markup=False, highlight=False)


def fail(message: str, hint: str | None = None) -> NoReturn:
    """A user error: one line on stderr, `error: <what> — <what to do>`, and exit status 1 (never a traceback).
    Plain text, so a path or server message holding brackets is not read as rich markup."""
    line = Text("error: ", style="bold red").append(message if hint is None else f"{message} — {hint}")
    console.print(line, highlight=False)
    raise typer.Exit(1)


class _StartupNoise(logging.Filter):
    """kombu warns "No hostname was supplied" for every connection to a broker on a Unix socket, which has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No hostname was supplied")


def hide_startup_noise() -> None:
    """What the embedded service would otherwise print at each start without telling its user anything:
    kombu's hostname warnings and Celery's warning about running as root (in a container, the usual case).
    Alembic's per-migration lines go too, on the console: `migrate` sums them up in one line."""
    from celery.exceptions import SecurityWarning

    logging.getLogger("kombu.connection").addFilter(_StartupNoise())
    warnings.filterwarnings("ignore", category=SecurityWarning)
    if get_settings().log_format != "json":  # log collectors keep them
        logging.getLogger("alembic").setLevel(logging.WARNING)


def hide_request_lines() -> None:
    """No line per HTTP request (api/request_ids.py writes them at INFO); errors have lines of their own."""
    from api import request_ids

    logging.getLogger(request_ids.__name__).setLevel(logging.WARNING)
