"""Task event streams in the embedded form (`facequeue serve`: SQLite, filesystem broker, no Redis): the worker's
events reach the API through log files in the data directory, watched with inotify."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from pathlib import Path

import httpx
from werkzeug import Request, Response

from api.services.event_hub import REREAD, TaskEventHub
from facequeue.cli.demo import moving_face_frames, write_video
from facequeue.enums import TaskStatus
from facequeue.lifecycle import task_events
from facequeue.settings import Settings
from tests.support import create_api_key, wait_until
from tests.test_embedded import embedded_server  # noqa: F401  (the embedded form, started once per module)
from tests.test_task_events import collect, names, opened, streamed, submit, video_b64


def test_an_embedded_video_streams_each_frame_then_its_final_event(
    embedded_server,  # noqa: F811
    media_server,
    tmp_path,
) -> None:
    server, data_dir, key, _ = embedded_server
    headers = {"Authorization": f"Bearer {key}"}
    video = base64.b64decode(video_b64(tmp_path))

    stream_open = threading.Event()

    def video_once_streamed(_request: Request) -> Response:
        stream_open.wait(timeout=60)  # the stream is open, on a task being downloaded, before the first frame
        return Response(video, content_type="video/mp4")

    media_server.expect_request("/clip.mp4").respond_with_handler(video_once_streamed)
    body = {"url": media_server.url_for("/clip.mp4"), "num_frames": 5}
    task_id = httpx.post(f"{server}/v1/detect", json=body, headers=headers).json()["detect_task_id"]
    stream = opened(streamed(f"{server}/v1/detect/{task_id}/events", headers))
    stream_open.set()
    stream.reader.join(timeout=120)
    events = stream.seen
    task = httpx.get(f"{server}/v1/detect/{task_id}", headers=headers).json()
    assert task["status"] == "succeeded"
    frames = sorted(task["result"]["faces_obj"], key=int)
    progress = [event for event in events if event.get("event") == "progress"]
    assert [event["id"] for event in progress] == ["1", "2", "3", "4", "5"]
    assert [event["data"]["frame"] for event in progress] == frames
    assert all(event["data"]["faces_obj"][event["data"]["frame"]]["region"] for event in progress)
    # the frames came live from the log file: the stream was open on a task still queued or downloading
    # (the fetch stage's worker claims it, hands it back queued, and a detect worker claims it again)
    statuses = [event["data"]["status"] for event in events if event.get("event") == "status"]
    assert statuses[-1] == "succeeded" and set(statuses[:-1]) <= {"queued", "processing"}
    assert all(before != after for before, after in zip(statuses, statuses[1:], strict=False))
    before_frames = len(statuses) - 1
    assert names(events) == ["status"] * before_frames + ["progress"] * 5 + ["status", "final"]
    assert events[-1]["data"]["result_url"] == f"{server}/v1/detect/{task_id}"
    # what the workers and the finalizer announced, one JSON line each, in the task's log file
    lines = [json.loads(line) for line in (data_dir / "events" / f"{task_id}.jsonl").read_text().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[-6:] == ["frame"] * 5 + ["status"] and set(kinds[:-6]) == {"status"}
    resumed = collect(f"{server}/v1/detect/{task_id}/events", {**headers, "Last-Event-ID": "3"})
    assert names(resumed) == ["status", "progress", "progress", "final"]
    assert [event["id"] for event in resumed if event.get("event") == "progress"] == ["4", "5"]


def test_one_tenant_deleting_its_streamed_task_never_stalls_another_tenant_s_stream(
    embedded_server,  # noqa: F811
    media_server,
    tmp_path,
) -> None:
    """Tenant A streams its own running video and deletes it; tenant B streams its own video meanwhile. A's
    stream ends canceled, the worker writes no more of A's events (no file is left), and B gets every frame
    live (before its final status, not replayed from the result), then its final event."""
    server, data_dir, key_a, _ = embedded_server
    alice, bob = (
        {"Authorization": f"Bearer {key_a}"},
        {"Authorization": f"Bearer {create_api_key(data_dir, 'tenant-b')}"},
    )
    media_server.expect_request("/long.mp4").respond_with_data(
        write_video(tmp_path / "long.mp4", moving_face_frames(count=200, faces=1)).read_bytes(),
        content_type="video/mp4",
    )
    media_server.expect_request("/short.mp4").respond_with_data(
        base64.b64decode(video_b64(tmp_path)), content_type="video/mp4"
    )
    a_task = submit(server, alice, url=media_server.url_for("/long.mp4"), num_frames=100)
    a_events = streamed(f"{server}/v1/detect/{a_task}/events", alice)
    wait_until(lambda: names(a_events.seen).count("progress") >= 2, timeout=120, what="A's task running")
    b_task = submit(server, bob, url=media_server.url_for("/short.mp4"), num_frames=5)
    b_events = streamed(f"{server}/v1/detect/{b_task}/events", bob)
    deleted = httpx.delete(f"{server}/v1/detect/{a_task}", headers=alice, timeout=10)
    assert deleted.status_code == 200 and deleted.json()["status"] == "canceled"
    a_events.reader.join(timeout=30)
    assert not a_events.reader.is_alive()
    assert a_events.seen[-1]["data"] == {"status": "canceled", "result_url": None, "error": None}
    b_events.reader.join(timeout=120)
    assert not b_events.reader.is_alive()
    statuses = [event["data"]["status"] for event in b_events.seen if event.get("event") == "status"]
    assert statuses[-1] == "succeeded" and set(statuses[:-1]) <= {"queued", "processing"}
    assert names(b_events.seen) == ["status"] * (len(statuses) - 1) + ["progress"] * 5 + ["status", "final"]
    assert b_events.seen[-1]["data"]["result_url"] == f"{server}/v1/detect/{b_task}"
    # A's run noticed the cancel and stopped; nothing it announced since is on disk
    wait_until(lambda: "detect_abandoned" in _lines_about(data_dir, a_task), timeout=60, what="A's run abandoned")
    assert not (data_dir / "events" / f"{a_task}.jsonl").exists()
    assert (data_dir / "events" / f"{b_task}.jsonl").exists()


def test_a_log_file_replaced_cut_short_or_deleted_touches_only_its_own_task_s_streams(tmp_path) -> None:
    """The API's listener on real files and inotify: one task's file replaced by one that is not ours and ends
    mid-line (as a deleted task's file recreated by its worker was, read from the old offset), then deleted.
    The other task's stream gets each of its events; the broken task's gets its own once they are whole again,
    and is told to read its task when the file goes."""
    settings = Settings(data_dir=tmp_path / "data", broker_url="filesystem://")
    for task_id in ("broken", "fine"):
        task_events.open_log(task_id, settings)
    entry = {"landmarks": [], "landmarks_str": [], "region": [], "removed": [], "frame_time": 0.0}

    async def scenario() -> None:
        hub = TaskEventHub(settings)
        broken, fine = await hub.subscribe("broken"), await hub.subscribe("fine")

        async def next_event(subscription) -> dict:
            return await asyncio.wait_for(subscription.events.get(), timeout=10)

        try:
            replacement = tmp_path / "replacement"
            replacement.write_bytes(b'not ours\n{"kind": "frame", "done": ')
            os.replace(replacement, task_events.log_file(settings, "broken"))
            for done in (1, 2, 3):
                task_events.announce_frame("fine", done, 3, str(done), entry, [], None, settings)
                assert (await next_event(fine))["done"] == done
            task_events.announce_status("broken", TaskStatus.PROCESSING, settings)  # completes the cut line: skipped
            task_events.announce_status("broken", TaskStatus.PROCESSING, settings)
            assert await next_event(broken) == {"kind": "status", "status": "processing", "error": None}
            task_events.forget("broken", settings)
            assert await next_event(broken) is REREAD
            task_events.announce_status("fine", TaskStatus.SUCCEEDED, settings)
            assert (await next_event(fine))["status"] == "succeeded"
            assert broken.events.empty() and not hub._listener.done()  # the listener never failed
        finally:
            await broken.close()
            await fine.close()

    asyncio.run(scenario())


def _lines_about(data_dir: Path, task_id: str) -> str:
    return "\n".join(line for line in (data_dir / "serve.log").read_text().splitlines() if task_id in line)
