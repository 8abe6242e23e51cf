"""The worker's logging: Celery's own lines go through our handler (`facequeue/core/logs.py`), and each task
run starts and ends with a clean log context."""

from __future__ import annotations

import logging

import structlog
from celery.apps import worker as celery_worker
from celery.signals import setup_logging, task_postrun, task_prerun

from facequeue.core.logs import configure_logging
from facequeue.core.settings import get_settings


@setup_logging.connect
def _use_our_logging(**_kwargs: object) -> None:
    """With a receiver here Celery installs no handler or formatter of its own (its plain-text lines)."""
    settings = get_settings()
    configure_logging(settings)
    if settings.log_format == "json":
        # Celery writes its shutdown notices ("worker: Warm shutdown (MainProcess)") straight to the stdout
        # file descriptor, past logging; this module-level helper is the one place they all go through.
        celery_worker.safe_say = _say_as_log_line


def _say_as_log_line(message: str, _stream: object = None) -> None:
    logging.getLogger(celery_worker.__name__).warning(message.strip())


@task_prerun.connect
@task_postrun.connect
def _fresh_log_context(**_kwargs: object) -> None:
    # A pool process runs task after task: no line of one may carry the ids bound by the previous one.
    structlog.contextvars.clear_contextvars()
