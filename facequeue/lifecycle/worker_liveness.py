"""Worker heartbeats: every worker process marks "a worker is alive" a few times per
FACEQUEUE_WORKER_ALIVE_AFTER, and /readyz reads the mark. One read, no broadcast to the workers.

Where the mark lives follows the broker, which every worker and API process already reaches:
- Redis broker: one key with that TTL, set by every beat. Redis expires it, so no clocks of two
  hosts are compared and a dead worker leaves nothing behind.
- embedded (filesystem broker, one machine): a file in the data dir whose modification time is the
  last beat.
"""

from __future__ import annotations

import time
from pathlib import Path

from facequeue.lifecycle.broker import redis_client
from facequeue.settings import Settings

HEARTBEAT_KEY = "facequeue:worker-alive"  # after FACEQUEUE_BROKER_KEY_PREFIX
HEARTBEAT_FILE = "worker-alive"  # in the data dir
# Beats per FACEQUEUE_WORKER_ALIVE_AFTER: two may be missed (a slow Redis, a busy machine) before
# the workers look gone.
BEATS_PER_WINDOW = 3


def beat_interval(settings: Settings) -> float:
    return settings.worker_alive_after / BEATS_PER_WINDOW


def record_beat(settings: Settings, worker_name: str) -> None:
    """Mark a worker alive for the next FACEQUEUE_WORKER_ALIVE_AFTER seconds."""
    if settings.is_embedded:
        heartbeat_file(settings).write_text(worker_name)
    else:
        redis_client(settings).set(heartbeat_key(settings), worker_name, px=int(settings.worker_alive_after * 1000))


def worker_alive(settings: Settings) -> bool:
    """Whether some worker beat within the last FACEQUEUE_WORKER_ALIVE_AFTER seconds."""
    if not settings.is_embedded:
        return bool(redis_client(settings).exists(heartbeat_key(settings)))
    try:
        beat_at = heartbeat_file(settings).stat().st_mtime
    except FileNotFoundError:
        return False
    return time.time() - beat_at <= settings.worker_alive_after


def heartbeat_key(settings: Settings) -> str:
    return settings.broker_key_prefix + HEARTBEAT_KEY


def heartbeat_file(settings: Settings) -> Path:
    return (settings.data_dir / HEARTBEAT_FILE).resolve()
