"""Where synchronous compat calls wait for their task to end, holding no thread while they wait.

They used to sleep in AnyIO's thread pool, which auth and every plain route share: 42 calls waiting on
a URL that hung held /healthz for 10.6 s (issue 10). Now each call awaits an event, and one poller
per event loop (an asyncio task, alive only while someone waits) asks the database which of the awaited
tasks are final, in one query per poll for all of them, run with a thread limit of its own rather than
the pool requests share.
"""

from __future__ import annotations

import asyncio
import weakref

import anyio
import structlog

from db import tasks
from db.engine import DATABASE_UNAVAILABLE
from facequeue.plumbing.sessions import get_sessionmaker

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.05  # how soon a final task is noticed; the poll costs one query whatever the number of waiters


class FinalWatch:
    """Wakes the calls waiting in one event loop once their tasks are final."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._poller: asyncio.Task | None = None
        self._reads = anyio.CapacityLimiter(1)  # one query at a time, outside the shared pool's 40 threads

    async def wait(self, task_id: str, timeout: float) -> bool:
        """True once the task is final; False when `timeout` seconds pass first."""
        final = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(final)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="final-watch")
        try:
            with anyio.move_on_after(timeout):
                await final.wait()
        finally:
            waiting = self._waiters.get(task_id)
            if waiting is not None:
                waiting.discard(final)
                if not waiting:
                    del self._waiters[task_id]
        return final.is_set()

    async def _poll(self) -> None:
        while self._waiters:
            await self._wake_final(list(self._waiters))
            await asyncio.sleep(POLL_SECONDS)

    async def _wake_final(self, task_ids: list[str]) -> None:
        try:
            final = await anyio.to_thread.run_sync(_final_among, task_ids, limiter=self._reads)
        except DATABASE_UNAVAILABLE as error:  # the calls keep waiting; their own timeout bounds the wait
            log.warning("final_watch_waits_for_database", unavailable=type(error).__name__)
            return
        except Exception:  # a bug must not end the poller: every waiter would then sit out its timeout
            log.exception("final_watch_failed")
            return
        for task_id in final:
            for event in self._waiters.pop(task_id, ()):
                event.set()


def _final_among(task_ids: list[str]) -> set[str]:
    with get_sessionmaker()() as session:
        return tasks.final_among(session, task_ids)


# One watch per event loop: its events and its poller belong to that loop (a server runs one; a test
# client may run one per request).
_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FinalWatch] = weakref.WeakKeyDictionary()


def final_watch() -> FinalWatch:
    """The running event loop's watch."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = FinalWatch()
    return watch
