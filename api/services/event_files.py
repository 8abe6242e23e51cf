"""The embedded event source of api/services/event_hub.py: the tasks' log files in data_dir/events, watched
with inotify (through watchfiles, so nothing polls). A watched task's file is read on from where its last read
stopped; one that can't be read, or is deleted (its task was), has that task's streams read their task again,
and the other tasks' streams never notice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from watchfiles import Change, awatch

from facequeue.lifecycle import task_events
from facequeue.settings import Settings

if TYPE_CHECKING:
    from api.services.event_hub import TaskEventHub

log = structlog.get_logger(__name__)

REREAD: dict[str, Any] = {"kind": "reread"}  # to a stream: read the task row again (a sweep, a reconnect)
LISTEN_SECONDS = 1.0  # longest wait for a message before the listener looks at its streams again
WATCH_DEBOUNCE_MS = 100  # changes to log files are handed over at most this late


class FileSource:
    """Embedded: the tasks' log files in data_dir/events, read as they change."""

    def __init__(self, settings: Settings, hub: TaskEventHub) -> None:
        self.settings = settings
        self.hub = hub
        self.positions: dict[str, task_events.LogPosition] = {}  # watched task -> where its next read starts

    def _path(self, task_id: str) -> Path:
        return task_events.log_file(self.settings, task_id)

    async def watch(self, task_id: str) -> None:
        self.positions[task_id] = task_events.START
        self._read_on(task_id, deliver=False)  # what is there already is the stream's history

    async def unwatch(self, task_id: str) -> None:
        self.positions.pop(task_id, None)

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        position = self.positions.get(task_id, task_events.START)
        return task_events.read_log_file(self._path(task_id), end=position.offset)[0]

    def _read_on(self, task_id: str, deliver: bool = True) -> None:
        if task_id not in self.positions:
            return
        try:
            events, self.positions[task_id] = task_events.read_log_file(self._path(task_id), self.positions[task_id])
        except OSError as error:  # this task's streams read their task instead; the listener goes on
            log.warning("task_events_log_unreadable", task_id=task_id, error=type(error).__name__)
            events = [REREAD]
        for event in events if deliver else ():
            self.hub.deliver(task_id, event)

    def _on_change(self, change: Change, task_id: str) -> None:
        if change == Change.deleted and task_id in self.positions:
            self.positions[task_id] = task_events.START
            self.hub.deliver(task_id, REREAD)  # the task was deleted: its streams end on what its row says
        else:
            self._read_on(task_id)

    async def listen(self) -> None:
        folder = task_events.events_folder(self.settings)
        folder.mkdir(parents=True, exist_ok=True)
        stop = asyncio.Event()
        started = False
        watching = awatch(
            folder,
            stop_event=stop,
            debounce=WATCH_DEBOUNCE_MS,
            step=10,
            recursive=False,
            rust_timeout=int(LISTEN_SECONDS * 1000),
            yield_on_timeout=True,
        )
        async for changes in watching:
            if not started:  # the first yield says the watch is on: lines written while it was set up are read now
                for task_id in list(self.positions):
                    self._read_on(task_id)
            for change, path in changes if started else ():
                self._on_change(change, Path(path).stem)
            started = True
            await self.hub.sweep_if_due()
            if not self.hub.subscriptions:
                stop.set()
