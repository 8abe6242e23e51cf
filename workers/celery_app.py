"""The worker process: the lifecycle's Celery app with the worker's tasks on it, and each pool process's start-up."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

from facequeue.core.logs import configure_logging
from facequeue.core.settings import get_settings
from facequeue.plumbing.sessions import get_engine
from workers import heartbeat, tasks, worker_logs  # noqa: F401  (heartbeat, worker_logs: their signal receivers)
from workers.detectors.registry import get_detector
from workers.metrics import start_exporter
from workers.runtimes import intra_op_threads

log = structlog.get_logger(__name__)


def worker_app() -> Celery:
    """The app `facequeue worker` runs: importing `workers.tasks` registered every task on it."""
    return tasks.celery


@worker_init.connect
def _prepare_main_process(**_kwargs: object) -> None:
    start_exporter(get_settings())  # in the main process, which outlives the pool processes it adds up


@worker_process_init.connect
def _prepare_pool_process(**_kwargs: object) -> None:
    settings = get_settings()
    configure_logging(settings)
    # The main process uses the database too (workers/lost_runs.py): its pooled connections must not be
    # shared through the fork. SQLAlchemy's recipe: forget them here, leaving them open for the parent.
    get_engine().dispose(close=False)
    # OpenCV gets the models' thread count (cores // pool processes unless set): a second thread sped YuNet
    # up by 8-24% here, while two single-threaded pool processes together did 1.4x; more threads than cores
    # in all would fight over them. Niceness lets a co-located API answer first.
    cv2.setNumThreads(intra_op_threads(settings))
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


@worker_ready.connect
def _announce_ready(sender: object = None, **_kwargs: object) -> None:
    log.info("worker_ready", hostname=getattr(sender, "hostname", None))
