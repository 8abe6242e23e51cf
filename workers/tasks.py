"""Celery tasks: thin wrappers that hand the work to the pipeline."""

from __future__ import annotations

import structlog
from celery.signals import worker_process_init, worker_ready

from facequeue.logs import configure_logging
from facequeue.settings import get_settings
from workers.celery_app import DETECT_TASK_NAME, get_celery
from workers.detectors.registry import get_detector
from workers.pipeline import run_detect_task

celery = get_celery()
log = structlog.get_logger(__name__)


@worker_process_init.connect
def _load_models(**_kwargs: object) -> None:
    # Each pool process loads its models once, before its first task, not during it.
    configure_logging(get_settings())
    get_detector()


@celery.task(name=DETECT_TASK_NAME)
def detect(task_id: str) -> None:
    run_detect_task(task_id)


@worker_ready.connect
def _announce_ready(sender: object = None, **_kwargs: object) -> None:
    log.info("worker_ready", hostname=getattr(sender, "hostname", None))
