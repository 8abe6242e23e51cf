"""The client is tested over real HTTP: the API served by uvicorn (Postgres, Redis and real
Celery workers behind it, from tests/conftest.py's fixtures), the embedded `facequeue serve` (test_embedded's
fixture), and pytest-httpserver where the server has to misbehave on purpose."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import cv2
import pytest
from facequeue_client import Client

from facequeue.cli.demo import astronaut_bgr
from tests.support import app_in_thread
from tests.test_embedded import embedded_server  # noqa: F401  (the embedded form, started once per module)
from tests.test_tenants import new_key


@pytest.fixture(scope="session")
def live_api(database: str) -> Iterator[str]:
    """The API with API keys on, served over a real socket by uvicorn (in a thread of the test process)."""
    from api.app import create_app
    from facequeue.core.settings import Settings

    with app_in_thread(create_app(Settings(auth="on")), "live-api") as base:
        yield base


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
