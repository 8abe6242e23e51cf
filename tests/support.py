"""Helpers the tests share."""

from __future__ import annotations

import os
import socket
import time

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
