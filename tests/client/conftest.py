"""The client is tested over real HTTP: the API served by uvicorn on a free port (Postgres, Redis and real
Celery workers behind it, from tests/conftest.py's fixtures), the embedded `facequeue serve` (test_embedded's
fixture), and pytest-httpserver where the server has to misbehave on purpose."""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator

import cv2
import pytest
from facequeue_client import Client

from facequeue.cli.demo import astronaut_bgr
from tests.support import free_port
from tests.test_embedded import embedded_server  # noqa: F401  (the embedded form, started once per module)
from tests.test_tenants import new_key


@pytest.fixture(scope="session")
def live_api(database: str) -> Iterator[str]:
    """The API with API keys on, served over a real socket by uvicorn (in a thread of the test process)."""
    import uvicorn

    from api.app import create_app
    from facequeue.settings import Settings

    port = free_port()
    config = uvicorn.Config(create_app(Settings(auth="on")), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the API did not start under uvicorn")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def tenant_name(clean_state: None) -> str:
    """A tenant of each test's own (the task table is emptied before each test too)."""
    return f"client-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api_key(tenant_name: str) -> str:
    return new_key(tenant_name)


@pytest.fixture
def client(live_api: str, api_key: str) -> Iterator[Client]:
    with Client(live_api, api_key, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def face_jpeg() -> bytes:
    """scikit-image's astronaut: one real face."""
    return cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
