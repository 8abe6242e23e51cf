"""Helpers the tests share."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent

REDIS_URL = os.environ.get("FACEQUEUE_TEST_REDIS", "redis://127.0.0.1:6379/15")
BROKER_KEY_PREFIX = f"facequeue-test-{os.getpid()}:"


def queue_key(queue: str) -> str:
    """The Redis list behind a Celery queue in this test run."""
    return BROKER_KEY_PREFIX + queue


FINAL_STATUSES = {"succeeded", "failed", "canceled"}


def wait_for_final(client, task_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(f"/v1/detect/{task_id}").json()
        if task["status"] in FINAL_STATUSES:
            return task
        time.sleep(0.1)
    raise TimeoutError(f"task {task_id} not final after {timeout}s: {task}")


def free_port() -> int:
    """A port nothing listens on right now (for a server to bind, or a connection to be refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def api_process(log_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`uvicorn api.app:create_app` in a process of its own, with `env` over this process's environment:
    (base URL, process) once /healthz answers; terminated on exit."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--log-level", "warning"], cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"the API did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    try:
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=15)
