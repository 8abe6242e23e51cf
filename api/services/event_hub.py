"""Where an API process's task event streams get their events (facequeue/plumbing/task_events.py announces
them): one listener per event loop, an asyncio task alive while a stream is open, fans them out over one Redis
pub/sub connection, subscribed to the channel of each task a stream watches, so an open stream costs neither a
query nor a connection of its own.

Every SWEEP_SECONDS the listener asks the database, in one query for all the tasks watched, which are final,
and tells their streams to read their task again: a final event lost to a Redis restart still ends them.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

import anyio
import redis
import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from db import tasks
from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.settings import Settings
from facequeue.plumbing import task_events
from facequeue.plumbing.sessions import get_sessionmaker

log = structlog.get_logger(__name__)

REREAD: dict[str, Any] = {"kind": "reread"}  # to a stream: read the task row again (a sweep, a reconnect)
LISTEN_SECONDS = 1.0  # longest wait for a message before the listener looks at its streams again
SWEEP_SECONDS = 15.0
RECONNECT_SECONDS = 1.0
HISTORY_CONNECTIONS = 3


class Subscription:
    """One stream's events of one task, in the order they arrived."""

    def __init__(self, hub: TaskEventHub, task_id: str) -> None:
        self.hub = hub
        self.task_id = task_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def history(self) -> list[dict[str, Any]]:
        """What the task announced before this subscription could see it (may repeat live events)."""
        return await self.hub.source.history(self.task_id)

    async def close(self) -> None:
        await self.hub.unsubscribe(self)


class TaskEventHub:
    def __init__(self, settings: Settings) -> None:
        self.subscriptions: dict[str, set[Subscription]] = {}
        self.source = RedisSource(settings, self)
        self._listener: asyncio.Task | None = None
        self._reads = anyio.CapacityLimiter(1)  # the sweep's query, outside the pool the requests share
        self._last_sweep = time.monotonic()

    async def subscribe(self, task_id: str) -> Subscription:
        subscription = Subscription(self, task_id)
        first = task_id not in self.subscriptions
        self.subscriptions.setdefault(task_id, set()).add(subscription)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="task-events")
        if first:
            await self.source.watch(task_id)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        watching = self.subscriptions.get(subscription.task_id, set())
        watching.discard(subscription)
        if not watching and self.subscriptions.pop(subscription.task_id, None) is not None:
            await self.source.unwatch(subscription.task_id)

    def deliver(self, task_id: str, event: dict[str, Any]) -> None:
        for subscription in self.subscriptions.get(task_id, ()):
            subscription.events.put_nowait(event)

    def reread_all(self) -> None:
        for task_id in self.subscriptions:
            self.deliver(task_id, REREAD)

    async def _listen(self) -> None:
        # a stream may subscribe while the source winds down: then it listens again
        while self.subscriptions:
            try:
                await self.source.listen()
            except Exception:  # a bug must not strand the streams: the sweep still ends them
                log.exception("task_events_listener_failed")
                await asyncio.sleep(RECONNECT_SECONDS)

    async def sweep_if_due(self) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_SECONDS or not self.subscriptions:
            return
        self._last_sweep = time.monotonic()
        try:
            final = await anyio.to_thread.run_sync(_final_among, list(self.subscriptions), limiter=self._reads)
        except DATABASE_UNAVAILABLE as error:
            log.warning("task_events_sweep_waits_for_database", unavailable=type(error).__name__)
            return
        for task_id in final:
            self.deliver(task_id, REREAD)


def _final_among(task_ids: list[str]) -> set[str]:
    with get_sessionmaker()() as session:
        return tasks.final_among(session, task_ids)


class RedisSource:
    """One pub/sub connection for all streams; each task's log list gives what came before."""

    def __init__(self, settings: Settings, hub: TaskEventHub) -> None:
        self.settings = settings
        self.hub = hub
        # each connect and reply bounded by FACEQUEUE_REDIS_TIMEOUT, no retries (as every Redis client here);
        # a few connections for all streams: 200 opening at once read their logs through them in turn
        pool = BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=HISTORY_CONNECTIONS + 1,  # and the pub/sub one
            timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
            socket_timeout=settings.redis_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = Redis(connection_pool=pool)
        self.pubsub: PubSub | None = None
        self.lost = False  # the connection failed: subscribe every watched task again on a new one
        self._commands = asyncio.Lock()  # one (un)subscribe at a time: two would each open a connection
        self._confirmed: dict[str, asyncio.Event] = {}  # channel -> set once Redis confirmed the subscription

    async def watch(self, task_id: str) -> None:
        name = task_events.channel(self.settings, task_id)
        confirmed = self._confirmed.setdefault(name, asyncio.Event())
        try:
            async with self._commands:
                await self._pubsub().subscribe(name)
            # events published before Redis took the SUBSCRIBE are in the log the stream reads next
            with anyio.move_on_after(self.settings.redis_timeout):
                await confirmed.wait()
        except (redis.RedisError, OSError) as error:  # the listener subscribes again once Redis answers
            log.warning("task_events_subscribe_failed", task_id=task_id, error=type(error).__name__)
            self.lost = True

    async def unwatch(self, task_id: str) -> None:
        name = task_events.channel(self.settings, task_id)
        self._confirmed.pop(name, None)
        async with self._commands:
            if self.pubsub is not None:
                try:
                    await self.pubsub.unsubscribe(name)
                except (redis.RedisError, OSError):
                    pass  # the connection is gone, and its subscriptions with it

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        try:
            raw = await self.client.lrange(task_events.log_key(self.settings, task_id), 0, -1)
        except (redis.RedisError, OSError) as error:
            log.warning("task_events_history_failed", task_id=task_id, error=type(error).__name__)
            return []
        return [event for event in map(task_events.decode, raw) if event is not None]

    def _pubsub(self) -> PubSub:
        if self.pubsub is None:
            self.pubsub = self.client.pubsub()
        return self.pubsub

    async def listen(self) -> None:
        """Deliver events until the hub has no subscription left."""
        while self.hub.subscriptions:
            try:
                if self.lost:
                    await self._resubscribe()
                if self._pubsub().subscribed:
                    message = await self._pubsub().get_message(timeout=LISTEN_SECONDS)
                    if message is not None:
                        self._handle(message)
                else:  # the first SUBSCRIBE is on its way
                    await asyncio.sleep(LISTEN_SECONDS / 20)
            except (redis.RedisError, OSError) as error:
                log.warning("task_events_connection_lost", error=type(error).__name__)
                self.lost = True
                await asyncio.sleep(RECONNECT_SECONDS)
            await self.hub.sweep_if_due()
        async with self._commands:
            await self._drop()

    async def _resubscribe(self) -> None:
        """A new connection, subscribed to every watched task; each stream then reads again what it missed."""
        async with self._commands:
            await self._drop()
            channels = [task_events.channel(self.settings, task_id) for task_id in self.hub.subscriptions]
            if channels:
                await self._pubsub().subscribe(*channels)
        self.lost = False
        self.hub.reread_all()

    def _handle(self, message: dict[str, Any]) -> None:
        name = message["channel"].decode()
        if message["type"] == "subscribe":
            if name in self._confirmed:
                self._confirmed[name].set()
        elif message["type"] == "message" and (event := task_events.decode(message["data"])) is not None:
            self.hub.deliver(name.rsplit(":", 1)[1], event)

    async def _drop(self) -> None:
        if self.pubsub is not None:
            pubsub, self.pubsub = self.pubsub, None
            try:
                await pubsub.aclose()
            except (redis.RedisError, OSError):
                pass


# One hub per event loop: its queues and its listener belong to that loop (a server runs one).
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TaskEventHub] = weakref.WeakKeyDictionary()


def task_event_hub(settings: Settings) -> TaskEventHub:
    """The running event loop's hub."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = TaskEventHub(settings)
    return hub
