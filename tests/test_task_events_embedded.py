"""Task event streams in the embedded form (`facequeue serve`: SQLite, filesystem broker, no Redis): the worker's
events reach the API through log files in the data directory, watched with inotify."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
from werkzeug import Request, Response

from tests.test_embedded import embedded_server  # noqa: F401  (the embedded form, started once per module)
from tests.test_task_events import collect, names, video_b64


def test_an_embedded_video_streams_each_frame_then_its_final_event(
    embedded_server,  # noqa: F811
    media_server,
    tmp_path,
) -> None:
    server, data_dir, key, _ = embedded_server
    headers = {"Authorization": f"Bearer {key}"}
    video = base64.b64decode(video_b64(tmp_path))

    def slow_video(_request: Request) -> Response:
        time.sleep(2)  # the stream is open, on a task being downloaded, before the first frame
        return Response(video, content_type="video/mp4")

    media_server.expect_request("/clip.mp4").respond_with_handler(slow_video)
    body = {"url": media_server.url_for("/clip.mp4"), "num_frames": 5}
    task_id = httpx.post(f"{server}/v1/detect", json=body, headers=headers).json()["detect_task_id"]
    events: list[dict] = []
    reader = threading.Thread(target=lambda: events.extend(collect(f"{server}/v1/detect/{task_id}/events", headers)))
    reader.start()
    reader.join(timeout=120)
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
