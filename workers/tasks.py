"""Celery tasks: thin wrappers that hand the work to the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
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
def _prepare_pool_process(**_kwargs: object) -> None:
    settings = get_settings()
    configure_logging(settings)
    # One OpenCV thread per process: a second thread speeds YuNet up by 8-24% here, while two
    # single-threaded pool processes together do 1.4x; threads in every process would fight over the
    # same cores. Niceness lets a co-located API answer first.
    cv2.setNumThreads(settings.worker_cv_threads)
    if settings.worker_nice:
        _lower_priority(settings.worker_nice)
    # Each pool process loads its models once, before its first task, not during it.
    get_detector()


def _lower_priority(niceness: int) -> None:
    os.nice(niceness)
    # With Linux's autogroup scheduling, nice only ranks processes within their session; sessions share
    # the CPU by their autogroup's nice, so that one is lowered too (the worker runs in its own session).
    try:
        Path("/proc/self/autogroup").write_text(str(niceness))
    except OSError:
        pass  # no autogroups here (or not allowed): the process nice above is what counts


@celery.task(name=DETECT_TASK_NAME)
def detect(task_id: str) -> None:
    run_detect_task(task_id)


@worker_ready.connect
def _announce_ready(sender: object = None, **_kwargs: object) -> None:
    log.info("worker_ready", hostname=getattr(sender, "hostname", None))
