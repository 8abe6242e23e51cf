"""Annotated previews end to end: real API, Postgres, Redis and Celery workers; the pictures are decoded and their
pixels checked where the boxes are."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import cv2
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import update
from werkzeug import Request, Response

from api.services.preview_drawing import BOX_BGR, SHAPE_BGR, contact_sheet_size
from db.models import DetectTask, utcnow
from facequeue.cli.demo import astronaut_bgr, moving_face_frames, write_video
from facequeue.core.settings import Settings, get_settings
from facequeue.core.storage import LocalStorage, get_storage, preview_frame_key, previews_prefix
from facequeue.lifecycle.reaper import reap
from facequeue.plumbing import task_events
from facequeue.plumbing.sessions import session_scope
from tests.conftest import IN_CI, SHARED_TESTDATA
from tests.support import REDIS_URL, wait_for_final
from tests.test_tenants import bearer, new_key

pytestmark = pytest.mark.integration


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def _decode(data: bytes) -> np.ndarray:
    assert data[:3] == b"\xff\xd8\xff"  # a JPEG
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _storage() -> LocalStorage:
    storage = get_storage(get_settings())
    assert isinstance(storage, LocalStorage)
    return storage


def _near(pixels: np.ndarray, colour: tuple[int, int, int]) -> float:
    """The share of pixel rows with a pixel within JPEG noise of `colour` (rows: (n, 3) or (n, band, 3))."""
    close = np.all(np.abs(pixels.astype(int) - np.array(colour)) <= 60, axis=-1)
    return float(np.mean(close if close.ndim == 1 else close.any(axis=1)))


def _distance(pixel: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.linalg.norm(pixel.astype(int) - np.array(colour)))


def _left_edges(image: np.ndarray, regions: list[list[int]], scale: float) -> list[np.ndarray]:
    """The pixels on each box's left edge, 3 px wide (its middle 60%, clear of the label and the corners)."""
    edges = []
    for x, y, _, h in regions:
        column = round(x * scale)
        top, bottom = round((y + 0.2 * h) * scale), round((y + 0.8 * h) * scale)
        edges.append(image[top:bottom, max(0, column - 1) : column + 2])
    return edges


def _submit_and_finish(client, body: dict, headers: dict | None = None) -> dict:
    task_id = client.post("/v1/detect", json=body, headers=headers or {}).json()["detect_task_id"]
    task = wait_for_final(client, task_id) if headers is None else _wait_with(client, task_id, headers)
    assert task["status"] == "succeeded", task["error"]
    return task


def _wait_with(client, task_id: str, headers: dict) -> dict:
    class Keyed:
        def get(self, path: str):
            return client.get(path, headers=headers)

    return wait_for_final(Keyed(), task_id)


def _assert_boxes_drawn(preview: np.ndarray, task: dict, frame: str = "0") -> None:
    """Amber along every box's left edge in the preview, and not there in the frame the worker kept."""
    regions = task["result"]["faces_obj"][frame]["region"]
    scale = preview.shape[1] / task["result"]["media"]["width"]
    kept = _decode(_storage().read_bytes(preview_frame_key(task["detect_task_id"], frame)))
    assert kept.shape == preview.shape
    for drawn, plain in zip(_left_edges(preview, regions, scale), _left_edges(kept, regions, scale), strict=True):
        assert _near(drawn, BOX_BGR) >= 0.8 and _near(plain, BOX_BGR) <= 0.2


def test_a_photo_preview_has_its_face_box_drawn(api_client, worker) -> None:
    task = _submit_and_finish(api_client, {"img": _b64(_jpeg(astronaut_bgr()))})
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 1
    response = api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    preview = _decode(response.content)
    assert preview.shape == (512, 512, 3)  # the frame's size: under 1280 px, it is kept as it is
    _assert_boxes_drawn(preview, task)
    # drawn once, then read from storage: the cached file is what the API answers
    cached = _storage().path(f"{previews_prefix(task['detect_task_id'])}/annotated-frame-0.jpg")
    assert cached.read_bytes() == response.content
    assert api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg?frame=0").content == response.content


@pytest.mark.testdata
def test_group_photo_previews_show_every_face(api_client, worker) -> None:
    entries = json.loads((SHARED_TESTDATA / "ground_truth_faces.json").read_text())
    group = [entry for entry in entries if entry["file"].startswith("dlib/")][:2]
    assert group or not IN_CI
    for entry in group:
        photo = (SHARED_TESTDATA / entry["file"]).read_bytes()
        task = _submit_and_finish(api_client, {"img": _b64(photo)})
        regions = task["result"]["faces_obj"]["0"]["region"]
        assert len(entry["faces"]) <= len(regions) <= len(entry["faces"]) + 1  # as tests/test_real_faces.py
        preview = _decode(api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg").content)
        width, height = task["result"]["media"]["width"], task["result"]["media"]["height"]
        scale = min(1.0, 1280 / max(width, height))
        assert preview.shape[:2] == (round(height * scale), round(width * scale))
        _assert_boxes_drawn(preview, task)


def test_90_point_previews_draw_the_face_shape(api_client, worker) -> None:
    task = _submit_and_finish(api_client, {"img": _b64(_jpeg(astronaut_bgr())), "landmarks": "90"})
    preview = _decode(api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg").content)
    shape = task["result"]["face_shape_set"]["0"][0]
    points = [point for group in shape.values() for point in group]
    assert len(points) == 90
    kept = _decode(_storage().read_bytes(preview_frame_key(task["detect_task_id"], "0")))
    # each point is a dot of 1 px radius on this 90 px face, which JPEG blurs: nearer the dots' colour than the
    # photo was there, for most of them (the 6 landmarks' dots cover a few)
    moved = [
        _distance(preview[point["y"], point["x"]], SHAPE_BGR) < _distance(kept[point["y"], point["x"]], SHAPE_BGR) - 60
        for point in points
    ]
    assert sum(moved) >= 0.8 * len(points)


def test_a_video_contact_sheet_is_a_grid_of_its_sampled_frames(api_client, worker, tmp_path) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(count=50, faces=1))  # 640x360
    task = _submit_and_finish(api_client, {"img": _b64(video.read_bytes()), "num_frames": 5})
    frames = sorted(task["result"]["faces_obj"], key=int)
    assert len(frames) == 5
    response = api_client.get(f"/v1/detect/{task['detect_task_id']}/contact.jpg")
    assert response.status_code == 200
    sheet = _decode(response.content)
    width, height = contact_sheet_size(5, 360 / 640)
    assert (width, height) == (5 * 320 + 6 * 4, 180 + 20 + 2 * 4)
    assert sheet.shape == (height, width, 3)
    preview = _decode(api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg?frame={frames[2]}").content)
    assert preview.shape == (360, 640, 3)
    _assert_boxes_drawn(preview, task, frames[2])


def test_previews_are_404_unless_succeeded_and_for_unknown_frames(api_client, worker, media_server) -> None:
    canceled = threading.Event()

    def missing_once_canceled(_request: Request) -> Response:
        canceled.wait(timeout=60)  # the task stays queued, or downloading, until the test has canceled it
        return Response("gone", status=404)

    media_server.expect_request("/slow.jpg").respond_with_handler(missing_once_canceled)
    queued = api_client.post("/v1/detect", json={"url": media_server.url_for("/slow.jpg")}).json()["detect_task_id"]
    try:
        response = api_client.get(f"/v1/detect/{queued}/preview.jpg")  # queued, or downloading: not final
        assert response.status_code == 404 and response.json()["error"]["code"] == "preview_not_found"
        assert api_client.post(f"/v1/detect/{queued}/cancel").json()["status"] == "canceled"
    finally:
        canceled.set()
    media_server.expect_request("/missing.jpg").respond_with_data("gone", status=404)
    failed = api_client.post("/v1/detect", json={"url": media_server.url_for("/missing.jpg")}).json()["detect_task_id"]
    assert wait_for_final(api_client, failed)["status"] == "failed"
    for task_id, status in ((queued, "canceled"), (failed, "failed")):
        response = api_client.get(f"/v1/detect/{task_id}/preview.jpg")
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "preview_not_found",
            "message": f"detect task {task_id} is {status}: previews exist once it has succeeded",
            "field": None,
        }
    done = _submit_and_finish(api_client, {"img": _b64(_jpeg(astronaut_bgr()))})
    response = api_client.get(f"/v1/detect/{done['detect_task_id']}/preview.jpg?frame=7")
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "preview_not_found",
        "message": f"frame 7 is not a frame of detect task {done['detect_task_id']}; its frames are 0",
        "field": "frame",
    }
    assert api_client.get("/v1/detect/no-such-task/contact.jpg").json()["error"]["code"] == "not_found"


def test_another_tenant_gets_404_and_delete_removes_the_stored_previews_and_events(clean_state, worker) -> None:
    from api.app import create_app

    owner, stranger = bearer(new_key("preview-owner")), bearer(new_key("preview-stranger"))
    with TestClient(create_app(Settings(auth="on"))) as client:
        task = _submit_and_finish(client, {"img": _b64(_jpeg(astronaut_bgr()))}, owner)
        task_id = task["detect_task_id"]
        for picture in ("preview.jpg", "contact.jpg"):
            assert client.get(f"/v1/detect/{task_id}/{picture}", headers=owner).status_code == 200
            refused = client.get(f"/v1/detect/{task_id}/{picture}", headers=stranger)
            assert refused.status_code == 404
            assert refused.json()["error"]["message"] == f"detect task {task_id} not found"
        stored = _storage().path(previews_prefix(task_id))
        assert {path.name for path in stored.iterdir()} == {
            "frame-0.jpg",
            "annotated-frame-0.jpg",
            "annotated-contact.jpg",
        }
        events = redis.Redis.from_url(REDIS_URL)
        assert events.exists(task_events.log_key(get_settings(), task_id))  # the frames' faces, as announced live
        assert client.delete(f"/v1/detect/{task_id}", headers=owner).json()["status"] == "succeeded"
        assert not stored.exists()
        assert not events.exists(task_events.log_key(get_settings(), task_id))
        gone = client.get(f"/v1/detect/{task_id}/preview.jpg", headers=owner)
        assert gone.status_code == 404
        assert (
            gone.json()["error"]["message"]
            == f"the result of detect task {task_id} was deleted, and its previews with it"
        )


def test_the_reaper_deletes_preview_frames_after_their_ttl(api_client, worker) -> None:
    task = _submit_and_finish(api_client, {"img": _b64(_jpeg(astronaut_bgr()))})
    task_id = task["detect_task_id"]
    assert api_client.get(f"/v1/detect/{task_id}/preview.jpg").status_code == 200
    with session_scope() as session:
        until = session.get(DetectTask, task_id).previews_until
        assert timedelta(seconds=86400 - 60) < until - utcnow() <= timedelta(seconds=86400)  # FACEQUEUE_PREVIEW_TTL
        session.execute(update(DetectTask).where(DetectTask.id == task_id).values(previews_until=utcnow()))
    with session_scope() as session:
        assert reap(session, get_settings()).previews_purged == 1
    assert not _storage().path(previews_prefix(task_id)).exists()
    with session_scope() as session:
        assert session.get(DetectTask, task_id).previews_until is None
    response = api_client.get(f"/v1/detect/{task_id}/preview.jpg")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"the preview frames of detect task {task_id} were deleted 86400 s after it succeeded (FACEQUEUE_PREVIEW_TTL)"
    )
    assert api_client.get(f"/v1/detect/{task_id}").json()["result"]["faces_obj"]["0"]["region"]  # the result stays


def test_a_preview_ttl_of_zero_keeps_no_frames(api_client, start_worker) -> None:
    start_worker(FACEQUEUE_PREVIEW_TTL="0")
    task = _submit_and_finish(api_client, {"img": _b64(_jpeg(astronaut_bgr()))})
    assert not _storage().path(previews_prefix(task["detect_task_id"])).exists()
    response = api_client.get(f"/v1/detect/{task['detect_task_id']}/preview.jpg")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"detect task {task['detect_task_id']} kept no frames for previews (FACEQUEUE_PREVIEW_TTL was 0)"
    )
