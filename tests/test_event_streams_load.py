"""200 task event streams open at once on one API process (`facequeue api` in a subprocess, so psutil can watch
it alone): every stream gets its final event, and the process holds one Redis subscriber for all of them.

Run with `-s` to see the API's CPU and memory (BENCHMARKS.md quotes them):
    .venv/bin/pytest -q -s tests/test_event_streams_load.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import cv2
import httpx
import psutil
import pytest

from facequeue.cli.demo import astronaut_bgr
from tests.support import REDIS_URL, start_server

pytestmark = pytest.mark.integration

TASKS = 100
STREAMS_PER_TASK = 2  # 200 streams: two per task, so each Redis channel fans out to two of them
MEASURE_SECONDS = 5.0


@pytest.fixture
def api_process(clean_state: None, tmp_path) -> Iterator[tuple[str, psutil.Process]]:
    server, process = start_server(
        lambda port: [sys.executable, "-m", "facequeue", "api", "--port", str(port)], tmp_path / "api.log", os.environ
    )
    yield server, psutil.Process(process.pid)
    process.terminate()
    process.wait(timeout=30)


def _sample(process: psutil.Process, seconds: float) -> tuple[float, float]:
    """(CPU % of one core over `seconds`, RSS MiB at the end)."""
    process.cpu_percent(None)
    time.sleep(seconds)
    return process.cpu_percent(None), process.memory_info().rss / 2**20


async def _stream(client: httpx.AsyncClient, task_id: str, opened: asyncio.Event, counter: list[int]) -> list[str]:
    """The event names of one stream, until it closes."""
    names = []
    async with client.stream("GET", f"/v1/detect/{task_id}/events") as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if len(names) == 1:
                    counter[0] += 1
                    if counter[0] == TASKS * STREAMS_PER_TASK:
                        opened.set()
    return names


def test_200_streams_on_one_api_process(api_process, start_worker) -> None:
    server, process = api_process
    photo = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()
    ids = [
        httpx.post(f"{server}/v1/detect", json={"img": photo}, timeout=30).json()["detect_task_id"]
        for _ in range(TASKS)
    ]
    _, idle_rss = _sample(process, 0.5)

    async def run() -> tuple[list[list[str]], dict[str, float]]:
        opened, counter = asyncio.Event(), [0]
        limits = httpx.Limits(max_connections=TASKS * STREAMS_PER_TASK + 10)
        async with httpx.AsyncClient(base_url=server, limits=limits, timeout=120) as client:
            streams = [
                asyncio.create_task(_stream(client, task_id, opened, counter))
                for task_id in ids
                for _ in range(STREAMS_PER_TASK)
            ]
            await asyncio.wait_for(opened.wait(), timeout=60)  # every stream has its first event
            cpu_open, rss_open = await asyncio.to_thread(_sample, process, MEASURE_SECONDS)
            redis_connections = [c for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == 6379]
            subscribers = await asyncio.to_thread(_numsub, ids)
            await asyncio.to_thread(start_worker, "streams", 2)
            started = time.monotonic()
            cpu_run, rss_run = await asyncio.to_thread(_sample, process, MEASURE_SECONDS)
            results = await asyncio.wait_for(asyncio.gather(*streams), timeout=180)
            return results, {
                "cpu_open": cpu_open,
                "rss_open": rss_open,
                "cpu_run": cpu_run,
                "rss_run": rss_run,
                "redis_connections": len(redis_connections),
                "subscribers": subscribers,
                "run_seconds": time.monotonic() - started,  # from the worker's start to the last final event
            }

    results, numbers = asyncio.run(run())
    tasks = [httpx.get(f"{server}/v1/detect/{task_id}", timeout=10).json() for task_id in ids]
    first_start = min(datetime.fromisoformat(task["started_at"]) for task in tasks)
    last_finish = max(datetime.fromisoformat(task["finished_at"]) for task in tasks)
    assert len(results) == TASKS * STREAMS_PER_TASK
    for names in results:
        assert names[0] == "status" and names[-2:] == ["status", "final"] and names.count("progress") == 1
    assert numbers["subscribers"] == {1}  # one subscription per task channel, shared by its two streams
    assert numbers["redis_connections"] <= 10  # pub/sub, log reads, publishes, rate limits: none per stream
    print(
        f"\n200 streams on one API process: RSS {idle_rss:.0f} MiB before, {numbers['rss_open']:.0f} MiB with them "
        f"open, {numbers['rss_run']:.0f} MiB while their tasks ran; CPU {numbers['cpu_open']:.1f}% of a core while "
        f"they waited, {numbers['cpu_run']:.1f}% while {TASKS} tasks ran and their events went out; "
        f"{numbers['redis_connections']} connections to Redis; the tasks ran in "
        f"{(last_finish - first_start).total_seconds():.1f} s, every stream had its final event "
        f"{numbers['run_seconds']:.1f} s after the worker started"
    )


def _numsub(task_ids: list[str]) -> set[int]:
    import redis

    from facequeue.core.settings import get_settings
    from facequeue.plumbing import task_events

    client = redis.Redis.from_url(REDIS_URL)
    channels = [task_events.channel(get_settings(), task_id) for task_id in task_ids]
    return {count for _, count in client.pubsub_numsub(*channels)}
