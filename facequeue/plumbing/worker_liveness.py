"""Worker heartbeats: every worker process marks "a worker is alive" a few times per
FACEQUEUE_WORKER_ALIVE_AFTER, and /readyz reads the mark. One read, no broadcast to the workers.

The mark is one Redis key (the broker's, which every worker and API process already reaches) with that TTL,
set by every beat. Redis expires it, so no clocks of two hosts are compared and a dead worker leaves
nothing behind.
"""

from __future__ import annotations

from facequeue.core.settings import Settings
from facequeue.plumbing.broker import redis_client

HEARTBEAT_KEY = "facequeue:worker-alive"  # after FACEQUEUE_BROKER_KEY_PREFIX
# Beats per FACEQUEUE_WORKER_ALIVE_AFTER: two may be missed (a slow Redis, a busy machine) before
# the workers look gone.
BEATS_PER_WINDOW = 3


def beat_interval(settings: Settings) -> float:
    return settings.worker_alive_after / BEATS_PER_WINDOW


def record_beat(settings: Settings, worker_name: str) -> None:
    """Mark a worker alive for the next FACEQUEUE_WORKER_ALIVE_AFTER seconds."""
    redis_client(settings).set(heartbeat_key(settings), worker_name, px=int(settings.worker_alive_after * 1000))


def worker_alive(settings: Settings) -> bool:
    """Whether some worker beat within the last FACEQUEUE_WORKER_ALIVE_AFTER seconds."""
    return bool(redis_client(settings).exists(heartbeat_key(settings)))


def heartbeat_key(settings: Settings) -> str:
    return settings.broker_key_prefix + HEARTBEAT_KEY
