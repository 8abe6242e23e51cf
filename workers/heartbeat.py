"""The worker's heartbeat, which /readyz reads (`facequeue/plumbing/worker_liveness.py`).

A thread in the worker's main process (the one that takes messages) beats from the moment the worker is
ready until its shutdown starts. Pool processes forked later do not inherit the thread.
"""

from __future__ import annotations

import threading

import structlog
from celery.signals import worker_ready, worker_shutting_down

from facequeue.core.settings import Settings, get_settings
from facequeue.plumbing.worker_liveness import beat_interval, record_beat

log = structlog.get_logger(__name__)

_shutting_down = threading.Event()


def beat_until_shutdown(settings: Settings, worker_name: str) -> None:
    failing = False
    while True:
        try:
            record_beat(settings, worker_name)
            if failing:
                log.info("worker_heartbeat_restored", worker=worker_name)
            failing = False
        except Exception as error:  # Redis or the disk is away: keep trying, and say so once
            if not failing:
                log.warning("worker_heartbeat_failed", worker=worker_name, error=type(error).__name__)
            failing = True
        if _shutting_down.wait(beat_interval(settings)):
            return


@worker_ready.connect
def _start_heartbeat(sender: object = None, **_kwargs: object) -> None:
    worker_name = str(getattr(sender, "hostname", "worker"))
    threading.Thread(
        target=beat_until_shutdown, args=(get_settings(), worker_name), name="worker-heartbeat", daemon=True
    ).start()


@worker_shutting_down.connect
def _stop_heartbeat(**_kwargs: object) -> None:
    _shutting_down.set()  # runs in a signal handler: only wake the thread, which then ends
