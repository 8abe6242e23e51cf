"""Logging shared by the API, workers and CLI: structlog and the standard library through one root handler.

Our structlog events and every library's stdlib records (Celery, kombu, uvicorn, alembic, httpx, warnings)
end in the same handler, whose `ProcessorFormatter` renders each record as one JSON object per line
(FACEQUEUE_LOG_FORMAT=json) or as a human console line. Context bound with `structlog.contextvars`
(a request's id, a task run's ids) is merged into both kinds of line.

Credentials never reach a line: API keys, webhook secrets and Authorization values are replaced in every field,
in anything rendered with repr, and in tracebacks, which show no local variables (a request's were the caller's
key). The one line that shows a key on purpose, the first key `serve` makes, marks it `ShownOnPurpose`.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

import structlog

from facequeue.core.settings import Settings

HANDLER_NAME = "facequeue"  # a reconfiguration (a forked pool process, a second app) replaces only our handler
REDACTED = "[redacted]"
# fq_ API keys, whsec_ webhook secrets, and the value of an Authorization header of any scheme
_CREDENTIAL = re.compile(r"\bfq_[\w-]{8,}|\bwhsec_[\w+/=-]{8,}|(?i:\b(?:bearer|basic)\s+)[\w.~+/=-]{8,}")
_PLAIN = (int, float, bool, type(None))


class ShownOnPurpose(str):
    """A credential a line is meant to show (the first API key, printed once): left as it is."""


def redact(text: str) -> str:
    return text if isinstance(text, ShownOnPurpose) else _CREDENTIAL.sub(REDACTED, text)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    text = repr(value)  # how the renderers would show it: an object holding a key (headers, a request)
    return redact(text) if _CREDENTIAL.search(text) else value


def _redact_fields(_logger: object, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # exc_info is left to the traceback's renderer, which redacts what it writes
    return {key: value if key == "exc_info" else _redacted(value) for key, value in event_dict.items()}


# no colours: their escape codes could split a key in two, and the redaction would miss both halves
_RICH_TRACEBACK = structlog.dev.RichTracebackFormatter(color_system=None, show_locals=False)  # type: ignore[arg-type]


def _redacted_traceback(sio: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    rendered = io.StringIO()
    _RICH_TRACEBACK(rendered, exc_info)
    sio.write(redact(rendered.getvalue()))


# Processors every line goes through, whether structlog or a library made it.
_SHARED_PROCESSORS: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure_logging(settings: Settings) -> None:
    """Route structlog and the stdlib root logger through one handler on stderr; safe to call again."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    json_lines = settings.log_format == "json"
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer = (
        [structlog.processors.format_exc_info, _redact_fields, structlog.processors.JSONRenderer()]
        if json_lines
        else [
            _redact_fields,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=_redacted_traceback),
        ]
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.name = HANDLER_NAME
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_SHARED_PROCESSORS,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    root = logging.getLogger()
    for previous in [existing for existing in root.handlers if existing.name == HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn() lines go through the handler too
    if json_lines:
        # an uncaught exception would otherwise print a plain traceback
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread


def bind_task_context(task_id: str, tenant: str | None, attempt: int) -> None:
    """Every line of a task run (ours, Celery's, the libraries') carries the task, its tenant and the attempt.

    The worker clears the context when a task starts and ends, so one run's ids never leak into the next."""
    structlog.contextvars.bind_contextvars(task_id=task_id, tenant=tenant, attempt=attempt)


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    structlog.get_logger("facequeue").critical("uncaught_exception", exc_info=(kind, error, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # what the default hook does too
    structlog.get_logger("facequeue").critical(
        "uncaught_exception",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
