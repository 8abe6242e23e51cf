"""Work that may only happen once a transaction has committed, and must not happen if it rolls back: a webhook
attempt's message, a status on the task's live event stream, the finished-task metrics, an upload's deletion.

`after_commit(session, run, item)` queues `item` on the session; when it commits, each `run` is called once with
every item queued for it, in the order the runs were first queued. A rollback drops the queue. One listener on the
Session class, installed when this module is imported, serves every session of the process: nothing to register
at start-up, and no listener to add per session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)

T = TypeVar("T")
Run = Callable[[Session, list[Any]], None]

_PENDING = "facequeue.after_commit"  # key in Session.info: {run: [item, ...]}


def after_commit(session: Session, run: Callable[[Session, list[T]], None], item: T) -> None:
    session.info.setdefault(_PENDING, {}).setdefault(run, []).append(item)


@event.listens_for(Session, "after_commit")
def _run_pending(committed: Session) -> None:
    pending: dict[Run, list[Any]] = committed.info.pop(_PENDING, {})
    for run, items in pending.items():
        try:
            run(committed, items)
        except Exception:  # the commit succeeded: what follows it may fail, never the caller
            log.exception("after_commit_failed", run=run.__qualname__, items=len(items))


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
