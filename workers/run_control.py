"""Heartbeat, progress, cancellation, the credits top-up and the final write for one worker run of a task.

A background thread refreshes the heartbeat so long downloads and slow frames never look
stale to the reaper. Every write is fenced by the run's attempt number: when it stops
matching (task canceled, or reaped and handed to another worker), the run is told to stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from db import collections, credits, tasks
from db.collections import RecognitionWrites
from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.enums import TaskStatus
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from facequeue.lifecycle import billing
from facequeue.lifecycle.finalize import on_task_final
from facequeue.plumbing.sessions import session_scope

log = structlog.get_logger(__name__)

PROGRESS_WRITE_INTERVAL = 0.5  # seconds; keeps per-frame progress from becoming per-frame UPDATEs

T = TypeVar("T")


class TaskAbandoned(Exception):
    """This run no longer owns its task: it was canceled or re-queued."""


class RunControl:
    def __init__(self, task_id: str, attempt: int, settings: Settings) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.settings = settings
        self._lost = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat_forever, name=f"heartbeat-{task_id}", daemon=True)
        # A run shorter than the interval writes no progress of its own: its final write carries it.
        self._last_progress_write = time.monotonic()
        self._unwritten: dict[str, object] = {}

    def __enter__(self) -> RunControl:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.settings.heartbeat_interval + 5)

    def _beat_forever(self) -> None:
        while not self._stopped.wait(self.settings.heartbeat_interval):
            self._write()

    def _write(self, **values: object) -> None:
        try:
            with session_scope() as session:
                if not tasks.heartbeat(session, self.task_id, self.attempt, **values):
                    self._lost.set()
        except SQLAlchemyError as error:
            # A missed beat is survivable; the next one (or the reaper) settles it.
            log.warning("heartbeat_failed", task_id=self.task_id, error=str(error))

    def check(self) -> None:
        if self._lost.is_set():
            raise TaskAbandoned(self.task_id)

    def report(self, **values: object) -> None:
        """Record progress or metadata, written at most every PROGRESS_WRITE_INTERVAL; then honour cancellation."""
        self._unwritten.update(values)
        now = time.monotonic()
        if now - self._last_progress_write >= PROGRESS_WRITE_INTERVAL:
            self._last_progress_write = now
            values, self._unwritten = self._unwritten, {}
            self._write(**values)
        self.check()

    def pay_for(self, cost: int, what: str) -> None:
        """Make the task's reservation cover `cost` before any frame runs: a top-up the balance must cover
        (billing.top_up), or the task fails with insufficient_credits. Never an unpaid frame."""
        top_up = through_database_outage(self._top_up, cost, settings=self.settings, step="credits top-up")
        if top_up is None:
            self._lost.set()
            raise TaskAbandoned(self.task_id)
        if not top_up.covered:
            raise TaskError(
                ErrorCode.INSUFFICIENT_CREDITS,
                f"this {what} needs {cost} credits, {top_up.reserved} were reserved, "
                f"and the balance does not cover the other {cost - top_up.reserved}",
            )

    def _top_up(self, cost: int) -> credits.TopUp | None:
        with session_scope() as session:
            return billing.top_up(session, self.task_id, self.attempt, cost)

    def unwritten(self) -> dict[str, object]:
        """Reported values not written yet, for the run's final write."""
        return dict(self._unwritten)


def through_database_outage(call: Callable[..., T], *args: Any, settings: Settings, step: str) -> T:
    """`call(*args)` for a run that holds its claim, tried again while the database is away, so the run goes on
    once it is back (a message retried instead would find the task taken, and it would wait for the reaper).
    Until the heartbeat would count as stale: by then the reaper may have handed the task on, and the run's
    fenced writes would match no row anyway (it then raises)."""

    def log_wait(state: RetryCallState) -> None:
        log.warning("run_waits_for_database", step=step, tries=state.attempt_number)  # the task is in the log context

    retrying = Retrying(
        retry=retry_if_exception_type(DATABASE_UNAVAILABLE),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(settings.heartbeat_stale_after),
        before_sleep=log_wait,
        reraise=True,
    )
    return retrying(call, *args)


def write_final(
    task_id: str,
    attempt: int,
    status: TaskStatus,
    values: dict[str, Any],
    settings: Settings,
    recognition: RecognitionWrites | None = None,
) -> bool:
    """Write the run's final status (and settle credits, queue the webhook, add the faces it indexes and keep their
    embeddings) once; False when the run no longer owned the task. A database that is away is waited for, the
    outcome held meanwhile."""
    return through_database_outage(
        _finish, task_id, attempt, status, values, recognition, settings=settings, step="final write"
    )


def _finish(
    task_id: str, attempt: int, status: TaskStatus, values: dict[str, Any], recognition: RecognitionWrites | None
) -> bool:
    with session_scope() as session:
        written = tasks.finish_task(session, task_id, attempt, status, **values)
        if written:
            if recognition is not None:
                collections.write_recognition(session, recognition)
            on_task_final(session, task_id)
    return written
