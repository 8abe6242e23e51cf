"""The CLI's message console."""

import structlog
from rich.console import Console

from facequeue.settings import get_settings

# stderr, so stdout carries only what a script reads: a new key, a secret, a result's JSON
console = Console(stderr=True)


def announce(event: str, text: str, level: str = "info", **fields: object) -> None:
    """A running service's message: `text` (rich markup) on the console, or with FACEQUEUE_LOG_FORMAT=json
    the log line `event` with `fields`, so that every line the service writes is JSON."""
    if get_settings().log_format == "json":
        getattr(structlog.get_logger("facequeue.cli"), level)(event, **fields)
    else:
        console.print(text)
