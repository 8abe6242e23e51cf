"""A revoked API key ends the event streams already open with it, within a heartbeat, even while events flow:
the API under uvicorn (FACEQUEUE_EVENTS_HEARTBEAT=0.5), Postgres, Redis pub/sub, a real revoke."""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from api.services.task_stream import KEY_REVOKED
from db import tenants
from facequeue.core.settings import get_settings
from facequeue.plumbing import task_events
from facequeue.plumbing.sessions import session_scope
from tests.support import wait_until
from tests.test_task_events import events_api, names, read_events, submit  # noqa: F401  (the API, once per module)
from tests.test_tenants import bearer, new_key

pytestmark = pytest.mark.integration


def test_a_revoked_key_ends_its_open_stream_while_frames_keep_coming(events_api, clean_state) -> None:  # noqa: F811
    key = new_key(f"events-revoked-{uuid.uuid4().hex[:8]}")
    headers = bearer(key)
    task_id = submit(events_api, headers, url="https://example.com/clip.mp4")  # queued: no worker runs here
    url = f"{events_api}/v1/detect/{task_id}/events"
    events: list[dict] = []

    def read() -> None:
        with httpx.stream("GET", url, headers=headers, timeout=30) as response:
            events.extend(read_events(response))  # one event at a time, as they come

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: list(events), timeout=10, what="the stream's first status")
    stop = threading.Event()
    entry = {"landmarks": [], "landmarks_str": [], "region": [], "removed": [], "frame_time": 0.0}

    def announce_frames() -> None:  # a frame every 0.1 s: the stream is never silent for a heartbeat
        for done in range(1, 1000):
            if stop.wait(0.1):
                return
            task_events.announce_frame(task_id, done, 1000, str(done), entry, [], None, get_settings())

    announcer = threading.Thread(target=announce_frames)
    announcer.start()
    try:
        wait_until(lambda: names(events).count("progress") >= 3, timeout=10, what="frames on the open stream")
        with session_scope() as session:
            assert tenants.revoke_key(session, key[: tenants.DISPLAY_PREFIX_LENGTH]) == 1
        revoked_at = time.monotonic()
        reader.join(timeout=20)
        ended_after = time.monotonic() - revoked_at
    finally:
        stop.set()
        announcer.join(timeout=10)
    assert not reader.is_alive() and ended_after < 5  # checked at each heartbeat (0.5 s), events or not
    assert names(events)[0] == "status" and "progress" in names(events)
    assert events[-1] == {"event": "unauthorized", "data": {"code": "unauthorized", "message": KEY_REVOKED}}
    assert "final" not in names(events)
    again = httpx.get(url, headers=headers, timeout=10)
    assert again.status_code == 401 and again.json()["error"]["code"] == "unauthorized"
