"""At most FACEQUEUE_MAX_SYNC_CALLS_PER_KEY synchronous compat calls waiting at once per API key.

A waiting call no longer holds a thread (final_watch.py), but it still keeps a task at interactive
priority, ahead of every tenant's other work, and an open connection: one key must not hold many. The
count is kept in the broker's Redis, so every API process shares it, as rate limits do.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

import anyio
import structlog
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import LockError

from api.errors import ServiceUnavailable, TooManySyncCalls
from facequeue.core.settings import Settings
from facequeue.plumbing.broker import BROKER_UNAVAILABLE

log = structlog.get_logger(__name__)

RETRY_AFTER = 1  # seconds: a slot frees as soon as one of the key's calls answers
# A Redis slot outlives the longest call by this much, and then expires: an API process that died while
# holding slots gives them back this way.
HOLD_MARGIN = 30.0


@asynccontextmanager
async def sync_call_slot(key_id: str | None, settings: Settings) -> AsyncIterator[None]:
    """Hold one of the key's slots for the whole call, or refuse it with 429. Without an API key
    (FACEQUEUE_AUTH=off) there is no one to count against."""
    if key_id is None:
        yield
        return
    slots = _slots(settings.redis_url, settings.broker_key_prefix, settings.redis_timeout)
    limit = settings.max_sync_calls_per_key
    held = await slots.take(key_id, limit, settings.sync_timeout + HOLD_MARGIN)
    if held is None:
        raise TooManySyncCalls(
            f"Too many synchronous calls at once: this API key already has {limit} waiting; "
            "retry when one of them has answered",
            RETRY_AFTER,
        )
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):  # given back even when the request is cancelled
            await slots.give_back(held)


class RedisSlots:
    """Slot i of a key is a Redis lock (redis-py's: an owner token and an expiry), taken when free."""

    def __init__(self, url: str, key_prefix: str, timeout: float) -> None:
        self._url = url
        self._key_prefix = key_prefix
        self._timeout = timeout
        # a client's connections belong to the event loop that made them
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # each connect and reply bounded by FACEQUEUE_REDIS_TIMEOUT, no retries (as every Redis client here)
            client = self._clients[loop] = Redis.from_url(
                self._url,
                socket_connect_timeout=self._timeout,
                socket_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
            )
        return client

    async def take(self, key_id: str, limit: int, hold_seconds: float) -> Lock | None:
        client = self._client()
        try:
            for slot in range(limit):
                name = f"{self._key_prefix}facequeue:sync-call:{key_id}:{slot}"
                lock = client.lock(name, timeout=hold_seconds, thread_local=False)
                if await lock.acquire(blocking=False):
                    return lock
        except BROKER_UNAVAILABLE as error:  # refused, not served without the cap every tenant relies on
            raise ServiceUnavailable() from error
        return None

    async def give_back(self, held: Lock) -> None:
        try:
            await held.release()
        except LockError:
            pass  # it expired first: the call outlived its sync timeout by HOLD_MARGIN
        except BROKER_UNAVAILABLE as error:  # the lock expires on its own
            log.warning("sync_slot_not_released", unavailable=type(error).__name__)


@lru_cache
def _slots(redis_url: str, key_prefix: str, redis_timeout: float) -> RedisSlots:
    return RedisSlots(redis_url, key_prefix, redis_timeout)
