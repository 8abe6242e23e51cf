"""The native API's options beyond detection: frame_urls, persons, 90-point landmarks, crops."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import cv2
import pytest

from facequeue.cli.demo import Placement, astronaut_bgr, compose, moving_face_frames, write_video
from tests.support import wait_for_final

pytestmark = pytest.mark.integration


def jpeg(image) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_frame_urls_with_persons(api_client, worker, media_server) -> None:
    for i in range(2):
        image = compose(600, 300, [Placement(30 + 10 * i, 50, 170)])
        media_server.expect_request(f"/f{i}.jpg").respond_with_data(jpeg(image), content_type="image/jpeg")
    body = {
        "frame_urls": [media_server.url_for(f"/f{i}.jpg") for i in range(2)],
        "timestamps": [2.0, 4.5],
        "persons": True,
    }
    task = wait_for_final(api_client, api_client.post("/v1/detect", json=body).json()["detect_task_id"])
    assert task["status"] == "succeeded", task["error"]
    result = task["result"]
    assert list(result["faces_obj"]) == ["0", "1"] and result["frame_count"] == 2
    assert [frame["frame_time"] for frame in result["faces_obj"].values()] == [2.0, 4.5]
    (person,) = result["persons"]
    assert person["first_seen"] == 2.0 and person["last_seen"] == 4.5 and person["face_url"].startswith("http")


def test_video_persons_and_90_points(api_client, worker) -> None:
    video = write_video(Path(tempfile.mkdtemp()) / "v.mp4", moving_face_frames(count=50, faces=2))
    body = {"img": base64.b64encode(video.read_bytes()).decode(), "num_frames": 5, "persons": True, "landmarks": "90"}
    task = wait_for_final(api_client, api_client.post("/v1/detect", json=body).json()["detect_task_id"])
    assert task["status"] == "succeeded", task["error"]
    result = task["result"]
    assert len(result["persons"]) == 2
    assert all(len(person["appearances"]) == 5 for person in result["persons"])
    shapes = result["face_shape_set"]
    assert list(shapes) == list(result["faces_obj"])
    for key, frame in result["faces_obj"].items():
        assert len(shapes[key]) == len(frame["region"]) == 2
        for shape, (x, y, w, h) in zip(shapes[key], frame["region"], strict=True):
            pupil = shape["left_pupil"][0]
            assert x <= pupil["x"] <= x + w and y <= pupil["y"] <= y + h


def test_unknown_option_values_are_refused(api_client) -> None:
    response = api_client.post("/v1/detect", json={"url": "https://e.com/a.jpg", "landmarks": "68"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "landmarks"
    response = api_client.post("/v1/detect", json={"frame_urls": ["https://e.com/a.jpg"], "timestamps": [1, 2]})
    assert response.json()["error"]["message"] == "timestamps length (2) must match frame_urls length (1)"


def test_astronaut_png_single_face_with_crop(api_client, worker) -> None:
    data = base64.b64encode(cv2.imencode(".png", astronaut_bgr())[1].tobytes()).decode()
    task = wait_for_final(
        api_client,
        api_client.post("/v1/detect", json={"img": data, "return_face_url": True, "expand_ratio": 0.5}).json()[
            "detect_task_id"
        ],
    )
    frame = task["result"]["faces_obj"]["0"]
    (x, y, w, h), (cx, cy, cw, ch) = frame["region"][0], frame["crop_region"][0]
    assert abs(cx - max(0, x - 0.5 * w)) <= 1 and abs(cw - (min(512, x + 1.5 * w) - cx)) <= 2
    assert abs(cy - max(0, y - 0.5 * h)) <= 1 and abs(ch - (min(512, y + 1.5 * h) - cy)) <= 2


def test_sample_fps_picks_frames_by_time(api_client, worker) -> None:
    video = write_video(Path(tempfile.mkdtemp()) / "v.mp4", moving_face_frames(count=75, faces=1))
    body = {"img": base64.b64encode(video.read_bytes()).decode(), "sample_fps": 2, "num_frames": 3}
    task = wait_for_final(api_client, api_client.post("/v1/detect", json=body).json()["detect_task_id"])
    assert task["status"] == "succeeded", task["error"]
    frames = task["result"]["faces_obj"]
    assert list(frames) == ["0", "12", "25", "38", "50", "62"]  # every 0.5 s of a 3 s clip at 25 fps
    assert [frame["frame_time"] for frame in frames.values()] == [0.0, 0.48, 1.0, 1.52, 2.0, 2.48]
    assert api_client.post("/v1/detect", json={"url": "https://e.com/v.mp4", "sample_fps": 0}).status_code == 422


def test_frame_urls_are_downloaded_together(api_client, worker, media_server) -> None:
    """Each response waits until another download is in flight: a worker fetching one URL after another
    would break the barrier, get 500s and fail the task."""
    import threading

    from werkzeug import Response

    in_flight = threading.Barrier(2, timeout=10)
    image = jpeg(compose(400, 300, [Placement(120, 60, 160)]))

    def together(_request) -> Response:
        try:
            in_flight.wait()
        except threading.BrokenBarrierError:
            return Response("downloaded alone", status=500)
        return Response(image, content_type="image/jpeg")

    for i in range(4):
        media_server.expect_request(f"/p{i}.jpg").respond_with_handler(together)
    body = {"frame_urls": [media_server.url_for(f"/p{i}.jpg") for i in range(4)]}
    task = wait_for_final(api_client, api_client.post("/v1/detect", json=body).json()["detect_task_id"])
    assert task["status"] == "succeeded", task["error"]
    assert [len(frame["landmarks"]) for frame in task["result"]["faces_obj"].values()] == [1, 1, 1, 1]
