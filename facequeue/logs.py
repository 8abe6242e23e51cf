"""Logging shared by the API, workers and CLI: structlog and the standard library through one root handler.

Our structlog events and every library's stdlib records (Celery, kombu, uvicorn, alembic, httpx, warnings)
end in the same handler, whose `ProcessorFormatter` renders each record as one JSON object per line
(FACEQUEUE_LOG_FORMAT=json) or as a human console line. Context bound with `structlog.contextvars`
(a request's id, a task run's ids) is merged into both kinds of line.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

import structlog

from facequeue.settings import Settings

HANDLER_NAME = "facequeue"  # a reconfiguration (a forked pool process, a second app) replaces only our handler

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
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if json_lines
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
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
