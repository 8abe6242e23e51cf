"""Issue 10, weakness 5: synchronous compat calls stalled the API for every tenant. Akool's detect_faces
slept in AnyIO's 40-thread pool, which auth and /healthz share: 42 calls waiting on a URL that hung held
/healthz for 10.6 s, and another tenant's GET /v1/detect/{id} for 30.2 s. Now the calls await their task
without a thread, and each API key may have only FACEQUEUE_MAX_SYNC_CALLS_PER_KEY of them waiting."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import func, select

from api.errors import TooManySyncCalls
from api.services.sync_slots import sync_call_slot
from db.models import DetectTask
from facequeue.core.enums import SubmitApi
from facequeue.core.settings import Settings
from facequeue.plumbing.sessions import session_scope
from tests.support import api_process, wait_until
from tests.test_tenants import bearer, error_message, make_client, new_key

pytestmark = pytest.mark.integration

DETECT_FACES = "/interface/detect-api/detect_faces"
SYNC_CALLS = 50
CAP = Settings().max_sync_calls_per_key
KEYS = -(-SYNC_CALLS // CAP)  # enough keys for every call to fit under the cap
TOO_MANY = (
    f"Too many synchronous calls at once: this API key already has {CAP} waiting; retry when one of them has answered"
)


class HangingServer:
    """Accepts connections and never answers: a media URL that hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/photo.jpg"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._held.append(connection)

    def close(self) -> None:
        """Stop listening and drop every held connection: the downloads then fail at once."""
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for connection in self._held:
            connection.close()


@pytest.fixture
def hanging_server() -> Iterator[HangingServer]:
    server = HangingServer()
    yield server
    server.close()


@pytest.fixture
def live_api(clean_state: None, tmp_path) -> Iterator[str]:
    """`uvicorn api.app:create_app` in a process of its own, API keys on."""
    # a long sync timeout: the calls must end by their tasks' failure, not by waiting out a loaded machine
    with api_process(tmp_path / "api.log", FACEQUEUE_AUTH="on", FACEQUEUE_SYNC_TIMEOUT="150") as (base, _process):
        yield base


def sync_tasks() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(DetectTask).where(DetectTask.api == SubmitApi.AKOOL))


def median_seconds(call: Callable[[], httpx.Response], times: int = 5) -> float:
    """The median duration of `times` calls, each on a new connection, each asserted to succeed. A stall
    slows every call by seconds; the median ignores a single scheduling hiccup on a busy machine."""
    durations = []
    for _ in range(times):
        started = time.perf_counter()
        response = call()
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(durations)


def test_waiting_sync_calls_leave_health_and_polling_fast(live_api: str, worker, hanging_server) -> None:
    keys = [new_key(f"sync-caller-{i}") for i in range(KEYS)]
    bystander = new_key("sync-bystander")
    polled = httpx.post(f"{live_api}/v1/detect", json={"url": "https://example.com/a.jpg"}, headers=bearer(bystander))
    polled_id = polled.json()["detect_task_id"]

    def sync_call(position: int) -> httpx.Response:
        key = keys[position % KEYS]
        return httpx.post(
            f"{live_api}{DETECT_FACES}", json={"url": hanging_server.url}, headers=bearer(key), timeout=180
        )

    with ThreadPoolExecutor(max_workers=SYNC_CALLS) as callers:
        answers = callers.map(sync_call, range(SYNC_CALLS))
        wait_until(lambda: sync_tasks() == SYNC_CALLS, timeout=60, what="the sync calls' tasks submitted")

        # 50 calls wait on the hanging URL; the API answers others as if they did not
        healthz = median_seconds(lambda: httpx.get(f"{live_api}/healthz", timeout=10))
        polling = median_seconds(
            lambda: httpx.get(f"{live_api}/v1/detect/{polled_id}", headers=bearer(bystander), timeout=10)
        )
        print(f"\nwith {SYNC_CALLS} sync calls waiting: /healthz {healthz:.3f} s, GET /v1/detect {polling:.3f} s")
        assert healthz < 0.5
        assert polling < 1.0

        # a key with CAP calls waiting gets a 429 in Akool's shape, and no task
        refused = httpx.post(f"{live_api}{DETECT_FACES}", json={"url": hanging_server.url}, headers=bearer(keys[0]))
        assert refused.status_code == 429
        assert refused.json() == {"error_code": 1, "error_msg": TOO_MANY, "faces_obj": {}}
        assert refused.headers["Retry-After"] == "1"
        assert sync_tasks() == SYNC_CALLS

        hanging_server.close()  # downloads fail now; every waiting call gets its task's failure
        answers = list(answers)
    failure = {"error_code": 1, "error_msg": "Failed to download media from URL", "faces_obj": {}}
    assert [(answer.status_code, answer.json()) for answer in answers] == [(200, failure)] * SYNC_CALLS

    # the slots were given back: the same key calls again (a refused connection now fails its task at once)
    again = httpx.post(
        f"{live_api}{DETECT_FACES}", json={"url": hanging_server.url}, headers=bearer(keys[0]), timeout=180
    )
    assert (again.status_code, again.json()) == (200, failure)


# path, body, and the HTTP status the route gives a sync timeout
SYNC_ROUTES = {
    "akool": (DETECT_FACES, {"url": "https://example.com/a.jpg"}, 200),
    "analyze_frames": (
        "/interface/detect-api/faceswap/analyze_frames",
        {"frame_urls": ["https://example.com/a.jpg"]},
        500,
    ),
    "acedata": ("/face/analyze", {"image_url": "https://example.com/a.jpg"}, 500),
}


@pytest.mark.parametrize("api", SYNC_ROUTES)
def test_every_sync_route_answers_the_cap_in_its_own_shape(clean_state, api: str) -> None:
    """No worker: the first call waits out its 3 s; meanwhile the same key's second is refused, another key's not."""
    path, body, timeout_status = SYNC_ROUTES[api]
    first, second = new_key(f"capped-{api}"), new_key(f"uncapped-{api}")
    with make_client(sync_timeout=3, max_sync_calls_per_key=1) as client, ThreadPoolExecutor(2) as callers:
        waiting = callers.submit(client.post, path, json=body, headers=bearer(first))
        wait_until(lambda: _tasks() == 1, timeout=10, what="the first call's task submitted")
        refused = client.post(path, json=body, headers=bearer(first))
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
        message = TOO_MANY.replace(f"has {CAP} waiting", "has 1 waiting")
        assert error_message(api, refused.json()) == message
        if api == "acedata":
            assert refused.json()["error"]["code"] == "too_many_requests"
        other = callers.submit(client.post, path, json=body, headers=bearer(second))
        for answer in (waiting.result(), other.result()):  # each waits out its timeout, in the route's own shape
            assert answer.status_code == timeout_status
            assert error_message(api, answer.json()).startswith("Detection did not finish within 3s")
    assert _tasks() == 2


def _tasks() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(DetectTask))


def test_slots_are_counted_per_key_in_redis(clean_state) -> None:
    """Each key's calls are counted in the broker's Redis (shared by every API process), and given back."""
    settings = Settings(max_sync_calls_per_key=2)

    async def calls() -> None:
        async with AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(sync_call_slot("key-a", settings))
            with pytest.raises(TooManySyncCalls) as refused:
                await held.enter_async_context(sync_call_slot("key-a", settings))
            assert refused.value.headers == {"Retry-After": "1"}
            await held.enter_async_context(sync_call_slot("key-b", settings))  # another key has its own slots
            for _ in range(3):  # no API key (FACEQUEUE_AUTH=off): not counted
                await held.enter_async_context(sync_call_slot(None, settings))
        async with sync_call_slot("key-a", settings), sync_call_slot("key-a", settings):
            pass  # both slots were given back

    asyncio.run(calls())
