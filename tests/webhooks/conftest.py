"""One real Celery worker for all webhook tests (it also consumes the webhooks queue), and a receiver helper.

The worker is shared, not started per test, to keep the suite fast; nothing here empties the
broker while it runs (clean_state would drop the queue bindings it declared on start).
"""

from __future__ import annotations

import secrets
import threading
from base64 import b64encode
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug import Request, Response

from tests.conftest import WorkerProcess
from tests.support import wait_until

RETRY_SCHEDULE = (0.2, 0.2, 0.5)


def new_secret() -> str:
    """A whsec_ secret as Standard Webhooks defines it: base64 of random bytes."""
    return "whsec_" + b64encode(secrets.token_bytes(24)).decode()


@pytest.fixture(scope="package")
def webhook_worker(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    log_path: Path = tmp_path_factory.mktemp("webhook-worker") / "worker.log"
    env = {"FACEQUEUE_WEBHOOK_RETRY_SCHEDULE": ",".join(map(str, RETRY_SCHEDULE))}
    worker = WorkerProcess("webhooks", log_path, env, concurrency=2)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def client(database: str):
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app()) as test_client:
        yield test_client


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint answering with `responses` in turn (the last one repeats), recording every request."""

    responses: Sequence[Response]
    requests: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(Received(dict(request.headers), request.get_data()))
            return self.responses[min(len(self.requests), len(self.responses)) - 1]

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        wait_until(
            lambda: len(self.requests),
            until=lambda got: got >= count,
            timeout=timeout,
            what=f"{count} webhook requests",
        )
        return self.requests
