"""`wait` on the task event stream: against the real API and workers (a video's frames arrive one by one), and
against pytest-httpserver where the stream has to break, stall or be missing on purpose."""

from __future__ import annotations

import json
import time

import pytest
from facequeue_client import AsyncClient, Client, WaitTimeout
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from facequeue.cli.demo import moving_face_frames, write_video

ENTRY = {
    "landmarks": [[[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12]]],
    "landmarks_str": ["1,2:3,4:5,6:7,8"],
    "region": [[0, 0, 20, 20]],
    "removed": [],
    "frame_time": 0.0,
    "face_urls": None,
    "crop_region": None,
    "crop_landmarks": None,
}


def sse(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


def status(name: str, done: int = 0, total: int = 2) -> str:
    return sse("status", {"status": name, "kind": "video", "progress": {"done": done, "total": total}})


def frame(done: int, key: str, total: int = 2) -> str:
    data = {"frame": key, "faces_obj": {key: ENTRY}, "scores": {key: [0.9]}, "progress": {"done": done, "total": total}}
    return sse("progress", data, done)


FINAL = sse("final", {"status": "succeeded", "result_url": "http://x/v1/detect/tk_1", "error": None})
DONE = {
    "detect_task_id": "tk_1",
    "status": "succeeded",
    "progress": {"done": 2, "total": 2},
    "result": {
        "faces_obj": {"0": ENTRY, "10": ENTRY},
        "scores": {"0": [0.9], "10": [0.9]},
        "media": {"kind": "video", "mime": "video/mp4", "width": 64, "height": 64},
        "detector": {"name": "yunet", "model_version": "v", "max_side": 1280},
        "frame_count": 2,
    },
}


def event_stream(body: str) -> Response:
    return Response(body, content_type="text/event-stream")


def test_wait_follows_a_video_frame_by_frame_in_two_requests(client: Client, worker, tmp_path) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(count=50, faces=1))
    accepted = client.detect(video, num_frames=5)
    changes = []
    before = client.request_count
    done = client.wait(accepted, timeout=90, on_progress=changes.append)
    assert client.request_count - before == 2  # the stream, then the finished task once
    assert done.status == "succeeded" and done.partial_faces_obj is None and changes[-1] == done
    assert done == client.get(accepted)
    running = [snapshot for snapshot in changes if snapshot.progress.done > 0 and not snapshot.is_final]
    assert [snapshot.progress.done for snapshot in running] == [1, 2, 3, 4, 5]
    keys = sorted(done.result.faces_obj, key=int)
    for count, snapshot in enumerate(running, start=1):
        assert snapshot.status == "processing" and snapshot.progress.total == 5
        assert snapshot.partial_faces_obj == {key: done.result.faces_obj[key] for key in keys[:count]}


@pytest.mark.anyio
async def test_async_wait_follows_the_event_stream(live_api: str, api_key: str, worker, face_jpeg: bytes) -> None:
    async with AsyncClient(live_api, api_key, timeout=10) as client:
        accepted = await client.detect(face_jpeg)
        changes = []
        before = client.request_count
        done = await client.wait(accepted, timeout=90, on_progress=changes.append)
        assert client.request_count - before == 2
    assert done.status == "succeeded" and changes[-1] == done
    frames = [snapshot.partial_faces_obj for snapshot in changes[:-1] if snapshot.progress.done == 1]
    assert frames[-1] == {"0": done.result.faces_obj["0"]}


def test_a_broken_stream_resumes_after_the_last_frame_it_had(httpserver: HTTPServer) -> None:
    seen = []

    def first_stream(request: Request) -> Response:  # two events, then the connection ends
        seen.append(request.headers.get("Last-Event-ID"))
        return event_stream(status("processing") + frame(1, "0"))

    def second_stream(request: Request) -> Response:
        seen.append(request.headers.get("Last-Event-ID"))
        return event_stream(status("processing", 1) + frame(2, "10") + status("succeeded", 2) + FINAL)

    httpserver.expect_ordered_request("/v1/detect/tk_1/events").respond_with_handler(first_stream)
    httpserver.expect_ordered_request("/v1/detect/tk_1/events").respond_with_handler(second_stream)
    httpserver.expect_ordered_request("/v1/detect/tk_1").respond_with_json(DONE)
    changes = []
    with Client(httpserver.url_for(""), "k") as client:
        done = client.wait("tk_1", timeout=30, on_progress=changes.append)
        assert client.request_count == 3
    assert seen == [None, "1"]
    assert [(t.status, t.progress.done, sorted(t.partial_faces_obj or {})) for t in changes] == [
        ("processing", 0, []),
        ("processing", 1, ["0"]),
        ("processing", 2, ["0", "10"]),
        ("succeeded", 2, []),
    ]
    assert done.result.frame_count == 2


def test_an_answer_that_is_not_an_event_stream_is_polled_instead(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/detect/tk_1/events").respond_with_json({"status": "ok"})  # a proxy's page
    httpserver.expect_ordered_request("/v1/detect/tk_1").respond_with_json(DONE)
    with Client(httpserver.url_for(""), "k") as client:
        assert client.wait("tk_1", timeout=30).status == "succeeded"
        assert client.request_count == 2


def test_a_stalled_stream_times_out_the_wait(httpserver: HTTPServer) -> None:
    def stalls(_request: Request) -> Response:
        def body():
            yield status("processing")
            time.sleep(3)  # no heartbeat either

        return Response(body(), content_type="text/event-stream")

    httpserver.expect_request("/v1/detect/tk_1/events").respond_with_handler(stalls)
    with Client(httpserver.url_for(""), "k") as client:
        started = time.monotonic()
        with pytest.raises(WaitTimeout) as raised:
            client.wait("tk_1", timeout=1.0)
        assert 1.0 <= time.monotonic() - started < 2.0
    assert raised.value.last.status == "processing"
