"""GET /v1/detect/{id}/events end to end: the API under uvicorn, Postgres, Redis pub/sub and real workers."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import httpx
import pytest
from sqlalchemy import update

from api.services import event_hub
from db.models import DetectTask, utcnow
from facequeue.cli.demo import astronaut_bgr, moving_face_frames, write_video
from facequeue.core.enums import TaskStatus
from facequeue.core.settings import Settings, get_settings
from facequeue.plumbing import task_events
from facequeue.plumbing.sessions import session_scope
from tests.support import app_in_thread, free_port, start_server, wait_until
from tests.test_tenants import bearer, new_key

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def events_api(database: str) -> Iterator[str]:
    """The API served by uvicorn in a thread of the test process."""
    from api.app import create_app

    with app_in_thread(create_app(Settings(auth="on", events_heartbeat=0.5)), "events-api") as base:
        yield base


@pytest.fixture
def key(clean_state: None) -> dict:
    return bearer(new_key("events-owner"))


def read_events(response: httpx.Response) -> Iterator[dict]:
    """Each event as {"event", "id", "data"} ("comment" for a heartbeat), parsed the way EventSource does."""
    event: dict = {}
    for line in response.iter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[name] = json.loads(value) if name == "data" else value


def collect(url: str, headers: dict, until_final: bool = True, timeout: float = 90) -> list[dict]:
    with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = []
        for event in read_events(response):
            events.append(event)
            if not until_final and "comment" in event:
                break
        return events


def names(events: list[dict]) -> list[str]:
    return [event.get("event", "comment") for event in events if "comment" not in event]


@dataclass
class Stream:
    seen: list[dict] = field(default_factory=list)
    reader: threading.Thread | None = None


def streamed(url: str, headers: dict) -> Stream:
    """A stream read in a thread; its events land in `seen` as they come."""
    stream = Stream()

    def read() -> None:
        with httpx.stream("GET", url, headers=headers, timeout=120) as response:
            assert response.status_code == 200
            stream.seen.extend(read_events(response))

    stream.reader = threading.Thread(target=read)
    stream.reader.start()
    return stream


def opened(stream: Stream, what: str = "the stream's first event") -> Stream:
    """`stream` once its first event came: the API has subscribed to its task, so whatever is announced from now
    on reaches it live."""
    wait_until(lambda: stream.seen, timeout=30, what=what)
    return stream


def submit(api: str, headers: dict, **body) -> str:
    response = httpx.post(f"{api}/v1/detect", json=body, headers=headers, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["detect_task_id"]


def video_b64(tmp_path, frames: int = 50) -> str:
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(count=frames, faces=1))
    return base64.b64encode(video.read_bytes()).decode()


def photo_b64() -> str:
    return base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()


def test_a_video_streams_each_frame_then_its_final_event(events_api, key, start_worker, tmp_path) -> None:
    task_id = submit(events_api, key, img=video_b64(tmp_path), num_frames=5)
    stream = streamed(f"{events_api}/v1/detect/{task_id}/events", key)
    # the stream is open on a queued task (heartbeats only) before any worker runs
    wait_until(lambda: any("comment" in event for event in stream.seen), timeout=30, what="a heartbeat")
    start_worker()
    stream.reader.join(timeout=90)
    events = stream.seen
    result = httpx.get(f"{events_api}/v1/detect/{task_id}", headers=key).json()
    frames = sorted(result["result"]["faces_obj"], key=int)
    # queued, processing (a fetch stage in between would add queued and processing again), the frames, succeeded
    statuses = [event["data"]["status"] for event in events if event.get("event") == "status"]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded"
    assert set(statuses) <= {"queued", "processing", "succeeded"}
    assert all(before != after for before, after in zip(statuses, statuses[1:], strict=False))
    assert names(events) == ["status"] * (len(statuses) - 1) + ["progress"] * 5 + ["status", "final"]
    assert any("comment" in event for event in events[:3])  # heartbeats while it waited
    progress = [event for event in events if event.get("event") == "progress"]
    assert [event["id"] for event in progress] == ["1", "2", "3", "4", "5"]
    for done, (event, frame) in enumerate(zip(progress, frames, strict=True), start=1):
        # partial results: the entry as the final result has it
        assert event["data"]["frame"] == frame
        assert event["data"]["faces_obj"] == {frame: result["result"]["faces_obj"][frame]}
        assert event["data"]["scores"] == {frame: result["result"]["scores"][frame]}
        assert event["data"]["progress"] == {"done": done, "total": 5}
    assert events[-1]["data"] == {
        "status": "succeeded",
        "result_url": f"{events_api}/v1/detect/{task_id}",
        "error": None,
    }


def test_a_finished_task_replays_from_its_result_after_last_event_id(events_api, key, worker) -> None:
    task_id = submit(events_api, key, img=photo_b64())
    first = collect(f"{events_api}/v1/detect/{task_id}/events", key)
    assert names(first)[-2:] == ["status", "final"] and names(first).count("progress") == 1
    # reconnecting after the only frame: its status and the final event, no frame again
    again = collect(f"{events_api}/v1/detect/{task_id}/events", {**key, "Last-Event-ID": "1"})
    assert names(again) == ["status", "final"]
    assert again[0]["data"] == {"status": "succeeded", "kind": "image", "progress": {"done": 1, "total": 1}}
    replayed = collect(f"{events_api}/v1/detect/{task_id}/events", key)
    assert names(replayed) == ["status", "progress", "final"]
    assert replayed[1]["id"] == "1" and list(replayed[1]["data"]["faces_obj"]) == ["0"]


def test_a_stream_opened_mid_run_replays_the_task_log(events_api, key) -> None:
    """What a worker announced before the stream connected comes from the task's log in Redis (announced here
    through the workers' own code path, on a task no worker takes)."""
    task_id = submit(events_api, key, url="https://example.com/clip.mp4")
    settings = get_settings()
    entry = {"landmarks": [], "landmarks_str": [], "region": [], "removed": [], "frame_time": 0.0}
    for done in (1, 2):
        task_events.announce_frame(task_id, done, 4, str(done * 10), entry, [], None, settings)
    stream = streamed(f"{events_api}/v1/detect/{task_id}/events", key)
    wait_until(lambda: names(stream.seen).count("progress") == 2, timeout=30, what="the logged frames replayed")
    task_events.announce_frame(task_id, 3, 4, "30", entry, [], None, settings)
    task_events.announce_frame(task_id, 2, 4, "20", entry, [], None, settings)  # a retried run repeats: skipped
    with session_scope() as session:  # the task fails (as a worker would write it), announced after commit
        session.execute(
            update(DetectTask)
            .where(DetectTask.id == task_id)
            .values(status=TaskStatus.FAILED, error_code="download_failed", error_msg="nope", finished_at=utcnow())
        )
        task_events.announce_after_commit(session, task_id, "failed", "download_failed", "nope")
    stream.reader.join(timeout=30)
    events = stream.seen
    assert names(events) == ["status", "status", "progress", "progress", "progress", "status", "final"]
    assert [event["id"] for event in events if event.get("event") == "progress"] == ["1", "2", "3"]
    assert events[-1]["data"] == {
        "status": "failed",
        "result_url": None,
        "error": {"code": "download_failed", "message": "nope"},
    }


def test_a_canceled_task_ends_its_stream(events_api, key) -> None:
    task_id = submit(events_api, key, url="https://example.com/a.jpg")
    stream = opened(streamed(f"{events_api}/v1/detect/{task_id}/events", key))
    assert httpx.post(f"{events_api}/v1/detect/{task_id}/cancel", headers=key).json()["status"] == "canceled"
    stream.reader.join(timeout=30)
    assert names(stream.seen) == ["status", "status", "final"]
    assert stream.seen[-1]["data"] == {"status": "canceled", "result_url": None, "error": None}


def test_a_lost_final_event_is_made_up_by_the_sweep(events_api, key, monkeypatch) -> None:
    monkeypatch.setattr(event_hub, "SWEEP_SECONDS", 1.0)
    task_id = submit(events_api, key, url="https://example.com/a.jpg")
    stream = opened(streamed(f"{events_api}/v1/detect/{task_id}/events", key))
    with session_scope() as session:  # final, and nobody announced it
        session.execute(
            update(DetectTask)
            .where(DetectTask.id == task_id)
            .values(status=TaskStatus.FAILED, error_code="worker_lost", error_msg="gone", finished_at=utcnow())
        )
    started = time.monotonic()
    stream.reader.join(timeout=30)
    assert not stream.reader.is_alive() and time.monotonic() - started < 5
    assert stream.seen[-1]["data"]["error"] == {"code": "worker_lost", "message": "gone"}


def test_streams_are_tenant_isolated_and_validate_last_event_id(events_api, key) -> None:
    task_id = submit(events_api, key, url="https://example.com/a.jpg")
    stranger = bearer(new_key("events-stranger"))
    response = httpx.get(f"{events_api}/v1/detect/{task_id}/events", headers=stranger, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "not_found",
        "message": f"detect task {task_id} not found",
        "field": "detect_task_id",
    }
    assert httpx.get(f"{events_api}/v1/detect/{task_id}/events", timeout=10).status_code == 401
    bad = httpx.get(f"{events_api}/v1/detect/{task_id}/events", headers={**key, "Last-Event-ID": "x"}, timeout=10)
    assert bad.status_code == 422
    assert bad.json()["error"]["message"] == "Last-Event-ID must be an event id of this stream: the frames seen so far"


def test_a_redis_that_does_not_answer_costs_a_publisher_one_timeout(monkeypatch) -> None:
    """Events are hints: a worker whose Redis is away loses them, not its task, and stops trying for a while."""
    monkeypatch.setattr(task_events, "_paused_until", 0.0)  # restored afterwards: other tests publish in-process
    away = Settings(broker_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    started = time.monotonic()
    task_events.announce_status("some-task", TaskStatus.PROCESSING, away)
    first = time.monotonic() - started
    started = time.monotonic()
    for done in range(1, 101):
        task_events.announce_frame("some-task", done, 100, str(done), {}, [], None, away)
    assert first < 1.5 and time.monotonic() - started < 0.1  # the other 100 events are dropped at once
    assert task_events._paused_until > time.monotonic() + task_events.PAUSE_AFTER_FAILURE - 5


def test_an_open_stream_does_not_hold_the_api_s_shutdown(clean_state, tmp_path) -> None:
    """Told to stop, `facequeue api` lets requests finish for FACEQUEUE_SYNC_TIMEOUT + 5 s, then cuts the streams
    (which last as long as their task) instead of waiting for them until it is killed."""
    import os
    import signal
    import sys

    server, api = start_server(
        lambda port: [sys.executable, "-m", "facequeue", "api", "--port", str(port)],
        tmp_path / "api.log",
        {**os.environ, "FACEQUEUE_SYNC_TIMEOUT": "1"},
    )
    try:
        task_id = submit(server, {}, url="https://example.com/a.jpg")  # queued: no worker runs here
        seen: list[dict] = []

        def read() -> None:
            with httpx.stream("GET", f"{server}/v1/detect/{task_id}/events", timeout=60) as response:
                try:
                    seen.extend(read_events(response))
                except httpx.HTTPError:
                    pass  # cut: a client resumes elsewhere with Last-Event-ID

        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: seen, timeout=30, what="the stream's first event")
        started = time.monotonic()
        api.send_signal(signal.SIGTERM)
        api.wait(timeout=30)
        reader.join(timeout=5)
        assert time.monotonic() - started < 1 + 5 + 3 and not reader.is_alive()
        assert names(seen) == ["status"]  # no final event: the task is still queued
    finally:
        if api.poll() is None:
            api.kill()


def test_a_lost_redis_connection_is_made_up_from_the_task_log(events_api, key) -> None:
    """The API's pub/sub connection is killed (CLIENT KILL, this process's only): what was published meanwhile
    reaches the stream anyway, from the task's log, once the listener has subscribed again."""
    import os

    import psutil
    import redis

    from tests.support import REDIS_URL

    admin = redis.Redis.from_url(REDIS_URL)

    def our_subscribers() -> list[dict]:
        """This process's Redis connections subscribed to a channel: the API's pub/sub connection."""
        ours = {c.laddr.port for c in psutil.Process(os.getpid()).net_connections(kind="tcp") if c.raddr}
        return [c for c in admin.client_list() if int(c["sub"]) > 0 and int(c["addr"].rsplit(":", 1)[1]) in ours]

    task_id = submit(events_api, key, url="https://example.com/clip.mp4")
    stream = opened(streamed(f"{events_api}/v1/detect/{task_id}/events", key))
    [pubsub] = our_subscribers()
    admin.client_kill_filter(_id=pubsub["id"])
    settings = get_settings()
    entry = {"landmarks": [], "landmarks_str": [], "region": [], "removed": [], "frame_time": 0.0}
    task_events.announce_frame(task_id, 1, 2, "0", entry, [], None, settings)  # nobody subscribed right now
    # the listener notices, waits RECONNECT_SECONDS and subscribes again on a new connection
    wait_until(
        our_subscribers,
        until=lambda subscribers: [c["id"] for c in subscribers] not in ([], [pubsub["id"]]),
        timeout=30,
        what="the API subscribed again",
    )
    wait_until(lambda: names(stream.seen).count("progress") == 1, timeout=30, what="the missed frame, from the log")
    task_events.announce_frame(task_id, 2, 2, "10", entry, [], None, settings)
    with session_scope() as session:
        session.execute(
            update(DetectTask)
            .where(DetectTask.id == task_id)
            .values(status=TaskStatus.FAILED, error_code="download_failed", error_msg="nope", finished_at=utcnow())
        )
        task_events.announce_after_commit(session, task_id, "failed", "download_failed", "nope")
    stream.reader.join(timeout=30)
    assert [event["id"] for event in stream.seen if event.get("event") == "progress"] == ["1", "2"]
    assert names(stream.seen)[-2:] == ["status", "final"]
