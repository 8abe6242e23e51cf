"""Re-queue at once the task of a run that died, instead of waiting for its heartbeat to go stale (60 s).

Both run in the worker's main process, which outlives its pool processes:
- a pool process dies under a detect task (killed, out of memory): Celery reports the task lost and puts
  its message back (reject on worker lost); the row, still `processing`, is re-queued here first, so that
  message (or the one published again) finds it claimable;
- a worker starts under the name of one that died with tasks in hand (a supervisor restarting it): before
  it consumes anything, it re-queues what its predecessor held.

Both are fenced like the reaper (attempt and heartbeat): a run that turns out to be alive loses nothing
but the rest of its run. When the database is away, the heartbeat path recovers the task later.
"""

from __future__ import annotations

from typing import Any

import structlog
from billiard.einfo import ExceptionInfo
from celery.exceptions import WorkerLostError
from celery.signals import worker_init
from celery.worker.request import Request

from facequeue.core.settings import get_settings
from facequeue.lifecycle.reaper import recover_runs_of
from facequeue.plumbing.sessions import session_scope

log = structlog.get_logger(__name__)

# WorkerLostError; billiard >= 4.3 may first report the exit itself, which Celery then treats as lost too
_POOL_PROCESS_DIED = (WorkerLostError, SystemExit, KeyboardInterrupt)


class DetectRequest(Request):
    """A detect message inside the main process; Celery calls `on_failure` when its pool process died."""

    def on_failure(self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False) -> None:
        died = isinstance(getattr(exc_info.exception, "exc", exc_info.exception), _POOL_PROCESS_DIED)
        if died and self.worker_pid is not None:
            _recover(self.hostname, self.worker_pid)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


@worker_init.connect
def _recover_predecessor(sender: Any = None, **_kwargs: object) -> None:
    _recover(sender.hostname, None)


def _recover(worker_name: str, worker_pid: int | None) -> None:
    try:
        with session_scope() as session:
            recovered = recover_runs_of(session, get_settings(), worker_name, worker_pid)
    except Exception:  # never in the way of Celery's own handling; the reaper recovers the task later
        log.exception("lost_run_recovery_failed", worker=worker_name, pid=worker_pid)
        return
    if recovered:
        log.warning("lost_runs_recovered", worker=worker_name, pid=worker_pid, tasks=recovered)
