"""Postgres or Redis away (issue 10, sections 2.3 and 2.4), against real servers and a real API process: a
client that stops waiting on a database that stopped answering, a 503 with Retry-After in each API's own
error shape, and submits that still succeed while only Redis is away. The servers themselves are stopped
and frozen in tests/faults/; here "away" is a port nothing listens on, which refuses as a stopped server does.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.conftest import dsn_for
from tests.support import free_port, start_server

pytestmark = pytest.mark.integration

UNAVAILABLE = "The service is temporarily unavailable; retry in a few seconds"
ANSWER_BOUND = 2.0  # a refused connection is known at once; the rest is a busy test machine
CLOSED_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:{port}/facequeue"


@contextmanager
def api_process(tmp_path: Path, **env: str) -> Iterator[httpx.Client]:
    """`facequeue api` in a process of its own, with these settings on top of the test environment."""
    base, process = start_server(
        lambda port: [sys.executable, "-m", "facequeue", "api", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path / "api.log",
        {**os.environ, **env},
    )
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=20)


# (method, path, JSON body, the error body each API answers with while a backend is away)
SHAPED_CALLS = [
    pytest.param(
        "POST",
        "/v1/detect",
        {"url": "http://127.0.0.1/a.jpg"},
        {"error": {"code": "service_unavailable", "message": UNAVAILABLE, "field": None}},
        id="native-submit",
    ),
    pytest.param(
        "GET",
        "/v1/detect/Wc3v9m",
        None,
        {"error": {"code": "service_unavailable", "message": UNAVAILABLE, "field": None}},
        id="native-poll",
    ),
    pytest.param(
        "POST",
        "/api/v1/client/job/detect-face-image",
        {"image_url": "http://127.0.0.1/a.jpg"},
        {"code": 503, "message": UNAVAILABLE, "data": None},
        id="crun",
    ),
    pytest.param(
        "POST",
        "/interface/detect-api/detect_faces",
        {"url": "http://127.0.0.1/a.jpg"},
        {"error_code": 1, "error_msg": UNAVAILABLE, "faces_obj": {}},
        id="akool-detect_faces",
    ),
    pytest.param(
        "POST",
        "/interface/detect-api/faceswap/analyze_frames",
        {"frame_urls": ["http://127.0.0.1/a.jpg"]},
        {"success": False, "error": UNAVAILABLE},
        id="akool-analyze_frames",
    ),
    pytest.param(
        "POST",
        "/face/analyze",
        {"image_url": "http://127.0.0.1/a.jpg"},
        {"success": False, "error": {"code": "service_unavailable", "message": UNAVAILABLE}},
        id="acedata",
    ),
]


@pytest.fixture(scope="module")
def api_without_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Client]]:
    """Two APIs whose database refuses every connection: one without keys (the routes reach the database),
    one with keys (the key lookup, before any route, does)."""
    database_url = CLOSED_POSTGRES.format(port=free_port())
    with (
        api_process(tmp_path_factory.mktemp("auth-off"), FACEQUEUE_DATABASE_URL=database_url) as auth_off,
        api_process(
            tmp_path_factory.mktemp("auth-on"), FACEQUEUE_DATABASE_URL=database_url, FACEQUEUE_AUTH="on"
        ) as auth_on,
    ):
        yield {"off": auth_off, "on": auth_on}


@pytest.mark.parametrize("auth", ["off", "on"])
@pytest.mark.parametrize(("method", "path", "body", "expected"), SHAPED_CALLS)
def test_database_away_answers_503_in_each_api_shape(api_without_database, auth, method, path, body, expected):
    started = time.monotonic()
    response = api_without_database[auth].request(
        method, path, json=body, headers={"Authorization": "Bearer fq_some_key"}
    )
    elapsed = time.monotonic() - started
    answer = response.json()
    if path == "/face/analyze":
        assert isinstance(answer.pop("trace_id"), str)
    assert (response.status_code, answer, response.headers["retry-after"]) == (503, expected, "5")
    assert elapsed < ANSWER_BOUND


def test_redis_away_refuses_keyed_requests_with_503(database, tmp_path: Path) -> None:
    """The per-key rate limit lives in Redis: when it can't be checked the request is refused, not let through."""
    key = _new_key()
    with api_process(
        tmp_path, FACEQUEUE_AUTH="on", FACEQUEUE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0"
    ) as client:
        started = time.monotonic()
        response = client.post("/v1/detect", json={"url": "http://127.0.0.1/a.jpg"}, headers={"x-api-key": key})
        elapsed = time.monotonic() - started
        crun = client.get(
            "/api/v1/client/job/detect-face-result", params={"detect_task_id": "x"}, headers={"x-api-key": key}
        )
    assert (response.status_code, response.json(), response.headers["retry-after"]) == (
        503,
        {"error": {"code": "service_unavailable", "message": UNAVAILABLE, "field": None}},
        "5",
    )
    assert elapsed < ANSWER_BOUND
    assert (crun.status_code, crun.json()) == (503, {"code": 503, "message": UNAVAILABLE, "data": None})


def test_redis_away_still_accepts_a_submit_for_the_reaper_to_publish(clean_state, tmp_path: Path) -> None:
    """Without keys nothing else needs Redis: the task is stored, its failed publish undone for the reaper."""
    from db.models import DetectTask
    from facequeue.plumbing.sessions import session_scope

    with api_process(tmp_path, FACEQUEUE_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0") as client:
        started = time.monotonic()
        response = client.post("/v1/detect", json={"url": "http://127.0.0.1/a.jpg"})
        elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert elapsed < ANSWER_BOUND
    with session_scope() as session:
        task = session.get(DetectTask, response.json()["detect_task_id"])
        assert (task.status, task.published_at) == ("queued", None)


def test_client_stops_waiting_on_a_database_that_does_not_answer(services) -> None:
    """A server that stopped answering never cancels its own statement: the client gives up on the reply
    (statement timeout + margin), drops the connection, and for a moment fails new connections at once."""
    from db.postgres import FAIL_FAST_SECONDS, REPLY_MARGIN, postgres_engine
    from facequeue.core.settings import Settings

    url = dsn_for("postgres", "postgresql+psycopg")
    engine = postgres_engine(url, Settings(database_url=url, database_timeout=0.5))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "500ms"
            connection.execute(text("SET statement_timeout = '30s'"))  # as if the server never enforced its own
            started = time.monotonic()
            with pytest.raises(OperationalError) as raised:
                connection.execute(text("SELECT pg_sleep(5)"))
            waited = time.monotonic() - started
        assert "no reply from the database within 1s" in str(raised.value)
        assert raised.value.connection_invalidated
        assert 0.5 + REPLY_MARGIN <= waited < 0.5 + REPLY_MARGIN + 0.5

        started = time.monotonic()
        with pytest.raises(OperationalError, match="did not answer a moment ago"), engine.connect():
            pass
        assert time.monotonic() - started < 0.1

        time.sleep(FAIL_FAST_SECONDS)  # the behaviour under test: once the window has passed, it tries again
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def _new_key() -> str:
    from db import tenants
    from facequeue.plumbing.sessions import session_scope

    with session_scope() as session:
        _, key = tenants.create_key(session, tenants.get_or_create_tenant(session, "outages"))
    return key
