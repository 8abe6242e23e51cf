"""The seed APIs end to end with a real worker: every example response's shape, and the values behind it."""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from facequeue.cli.demo import Placement, astronaut_bgr, compose, moving_face_frames, write_video
from tests.contract_examples import (
    ACEDATA_ERROR,
    ACEDATA_GROUP_SIZES,
    AKOOL_ANALYZE_FRAMES,
    AKOOL_DETECT_FACES,
    AKOOL_DETECT_FACES_WITH_CROPS,
    CRUN_CREATE,
    CRUN_RESULT,
    assert_same_shape,
)
from tests.support import wait_for_final

pytestmark = pytest.mark.integration

DETECT_FACES = "/interface/detect-api/detect_faces"
ANALYZE_FRAMES = "/interface/detect-api/faceswap/analyze_frames"
CRUN = "/api/v1/client/job"


def jpeg(image) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def serve(media_server, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
    media_server.expect_request(f"/{name}").respond_with_data(data, content_type=content_type)
    return media_server.url_for(f"/{name}")


def fetch_image(api_client, link: str) -> np.ndarray:
    parts = urlsplit(link)
    response = api_client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    return cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)


def two_heads(shift: int = 0) -> np.ndarray:
    return compose(720, 320, [Placement(40 + shift, 60, 180), Placement(420 + shift, 70, 170, mirrored=True)])


# --- Akool detect_faces (seeds 000/001) -----------------------------------------------------------


def test_detect_faces_basic_image(api_client, worker, media_server) -> None:
    response = api_client.post(DETECT_FACES, json={"url": serve(media_server, "a.jpg", jpeg(astronaut_bgr()))})
    assert response.status_code == 200
    body = response.json()
    assert_same_shape(AKOOL_DETECT_FACES, body)
    assert body["error_code"] == 0 and body["error_msg"] == "SUCCESS"
    frame = body["faces_obj"]["0"]
    assert len(frame["region"]) == 1 and frame["frame_time"] is None and frame["removed"] == []


def test_detect_faces_with_crops(api_client, worker) -> None:
    data = "data:image/jpeg;base64," + base64.b64encode(jpeg(two_heads())).decode()
    body = api_client.post(DETECT_FACES, json={"img": data, "return_face_url": True}).json()
    assert_same_shape(AKOOL_DETECT_FACES_WITH_CROPS, body)
    frame = body["faces_obj"]["0"]
    assert len(frame["face_urls"]) == len(frame["crop_region"]) == len(frame["crop_landmarks"]) == 2
    for region, crop, points, relative, link in zip(
        frame["region"],
        frame["crop_region"],
        frame["landmarks"],
        frame["crop_landmarks"],
        frame["face_urls"],
        strict=True,
    ):
        x, y, w, h = region
        cx, cy, cw, ch = crop
        # the crop grows the unrounded box by 0.3 of its size per side: within a pixel of the rounded one's
        assert abs(cx - max(0, x - 0.3 * w)) <= 1 and abs(cy - max(0, y - 0.3 * h)) <= 1
        assert cx <= x and cy <= y and cx + cw >= x + w and cy + ch >= y + h
        assert cx + cw <= 720 and cy + ch <= 320  # clipped to the image
        assert relative == ":".join(f"{px - cx},{py - cy}" for px, py in points[:4])
        crop_image = fetch_image(api_client, link)
        assert crop_image.shape[:2] == (ch, cw)


def test_detect_faces_single_face_video_and_removed(api_client, worker) -> None:
    # two heads for 40 frames, then only the left one: the right one shows up in `removed` once
    frames = moving_face_frames(count=40, faces=2) + [compose(640, 360, [Placement(40, 100, 150)]) for _ in range(40)]
    video = write_video(__import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "v.mp4", frames)
    payload = base64.b64encode(video.read_bytes()).decode()
    body = api_client.post(DETECT_FACES, json={"img": payload, "num_frames": 8}).json()
    assert body["error_code"] == 0, body
    frames_obj = body["faces_obj"]
    assert list(frames_obj) == [str(i * 10) for i in range(8)]
    counts = [len(frame["region"]) for frame in frames_obj.values()]
    assert counts == [2, 2, 2, 2, 1, 1, 1, 1]
    removed = [frame["removed"] for frame in frames_obj.values()]
    assert removed[:4] == [[], [], [], []] and removed[5:] == [[], [], []]
    (gone,) = removed[4]
    assert gone == frames_obj["30"]["region"][1]  # the right-hand face as it was in the previous sample
    single = api_client.post(DETECT_FACES, json={"img": payload, "num_frames": 4, "single_face": True}).json()
    assert [len(frame["region"]) for frame in single["faces_obj"].values()] == [1, 1, 1, 1]


def test_detect_faces_download_failure(api_client, worker, media_server) -> None:
    media_server.expect_request("/gone.jpg").respond_with_data("no", status=404)
    body = api_client.post(DETECT_FACES, json={"url": media_server.url_for("/gone.jpg")}).json()
    assert body == {"error_code": 1, "error_msg": "Failed to download media from URL", "faces_obj": {}}


def test_detect_faces_timeout_names_the_task_which_still_finishes(api_client, start_worker, media_server) -> None:
    from facequeue.core.settings import get_settings

    settings = get_settings()
    original, settings.sync_timeout = settings.sync_timeout, 0.5
    try:
        body = api_client.post(
            DETECT_FACES, json={"url": serve(media_server, "late.jpg", jpeg(astronaut_bgr()))}
        ).json()
    finally:
        settings.sync_timeout = original
    assert body["error_code"] == 1 and body["faces_obj"] == {}
    assert body["error_msg"].startswith("Detection did not finish within 0.5s; it is still running as detect_task_id ")
    task_id = body["error_msg"].split("detect_task_id ")[1].split(" ")[0]
    start_worker()
    assert wait_for_final(api_client, task_id)["status"] == "succeeded"


# --- Akool analyze_frames (seed 003) ----------------------------------------------------------------


def test_analyze_frames_merges_people_across_frames(api_client, worker, media_server) -> None:
    urls = [
        serve(media_server, "f0.jpg", jpeg(two_heads())),
        serve(media_server, "f1.jpg", jpeg(two_heads(shift=20))),
        serve(media_server, "f2.jpg", jpeg(compose(720, 320, [Placement(60, 60, 180)]))),
    ]
    response = api_client.post(ANALYZE_FRAMES, json={"frame_urls": urls, "timestamps": [0.0, 1.5, 3.0]})
    assert response.status_code == 200
    body = response.json()
    assert_same_shape(AKOOL_ANALYZE_FRAMES, body)
    assert body["success"] is True and body["frame_count"] == 3
    persons = body["persons"]
    # a mirrored face embeds close to the original, but two faces in one frame are two people
    assert [person["person_id"] for person in persons] == ["person_0", "person_1"]
    assert [person["index"] for person in persons] == [0, 1]
    left, right = persons
    assert [a["frame_idx"] for a in left["appearances"]] == [0, 1, 2]
    assert [a["timestamp"] for a in left["appearances"]] == [0.0, 1.5, 3.0]
    assert (left["first_seen"], left["last_seen"]) == (0.0, 3.0)
    assert [a["frame_idx"] for a in right["appearances"]] == [0, 1]
    assert right["last_seen"] == 1.5
    for person in persons:
        x1, y1, x2, y2 = person["bbox"]
        assert x2 > x1 and y2 > y1 and person["bbox"] == person["appearances"][0]["bbox"]
        assert 0.0 <= person["confidence"] <= 1.0
        crop = fetch_image(api_client, person["face_url"])
        width, height = x2 - x1, y2 - y1
        assert crop.shape[1] >= width and crop.shape[0] >= height  # expanded by 0.3 per side, clipped


def test_analyze_frames_single_image_makes_every_face_a_person(api_client, worker, media_server) -> None:
    url = serve(media_server, "one.jpg", jpeg(two_heads()))
    body = api_client.post(ANALYZE_FRAMES, json={"frame_urls": [url], "expand_ratio": 0.0}).json()
    assert body["frame_count"] == 1 and len(body["persons"]) == 2
    assert all(person["appearances"][0]["timestamp"] == 0.0 for person in body["persons"])
    first = body["persons"][0]
    crop = fetch_image(api_client, first["face_url"])
    x1, y1, x2, y2 = first["bbox"]
    assert abs(crop.shape[1] - (x2 - x1)) <= 1 and abs(crop.shape[0] - (y2 - y1)) <= 1  # expand_ratio 0: the box


def test_analyze_frames_no_faces_and_download_failure(api_client, worker, media_server) -> None:
    blank = serve(media_server, "blank.jpg", jpeg(np.full((200, 300, 3), 128, np.uint8)))
    assert api_client.post(ANALYZE_FRAMES, json={"frame_urls": [blank]}).json() == {
        "success": True,
        "frame_count": 1,
        "persons": [],
    }
    media_server.expect_request("/missing.jpg").respond_with_data("no", status=404)
    response = api_client.post(ANALYZE_FRAMES, json={"frame_urls": [blank, media_server.url_for("/missing.jpg")]})
    assert response.status_code == 400
    assert response.json() == {"success": False, "error": "Failed to download image from URL"}


# --- crun (seed 004) ---------------------------------------------------------------------------------


def _crun_result(api_client, task_id: str) -> tuple[int, dict]:
    wait_for_final(api_client, task_id)
    response = api_client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": task_id})
    return response.status_code, response.json()


def test_crun_image_task(api_client, worker, media_server) -> None:
    created = api_client.post(
        f"{CRUN}/detect-face-image", json={"image_url": serve(media_server, "g.jpg", jpeg(two_heads()))}
    )
    assert_same_shape(CRUN_CREATE, created.json())
    status, body = _crun_result(api_client, created.json()["data"]["detect_task_id"])
    assert status == 200
    assert_same_shape(CRUN_RESULT, body)
    result = body["data"]["result"]
    assert body["data"]["status"] == "succeeded" and body["data"]["error"] is None
    assert result["status"] == "succeed" and result["type"] == "face_detect" and result["hair_id"] is None
    assert len(result["id"]) >= 10 and result["error"] is None
    assert [face["id"] for face in result["faces"]] == [0, 1]
    for face in result["faces"]:
        assert fetch_image(api_client, face["link"]).shape[0] > 100
    for stamp in (result["started_at"], result["finished_at"]):
        assert __import__("re").fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp)


def test_crun_reads_a_task_submitted_natively_with_no_detect_id(api_client, worker, media_server) -> None:
    """Found by fuzzing: only crun's submits make a detect_id; its result reads null for any other task."""
    created = api_client.post("/v1/detect", json={"url": serve(media_server, "g.jpg", jpeg(two_heads()))})
    status, body = _crun_result(api_client, created.json()["detect_task_id"])
    assert status == 200 and body["data"]["status"] == "succeeded"
    result = body["data"]["result"]
    assert result["id"] is None and result["status"] == "succeed" and result["error"] is None


def test_crun_video_lists_distinct_persons_and_detect_id_expires(api_client, worker, media_server) -> None:
    import tempfile
    from pathlib import Path

    from facequeue.core.settings import get_settings

    video = write_video(Path(tempfile.mkdtemp()) / "two.mp4", moving_face_frames(count=50, faces=2))
    url = serve(media_server, "two.mp4", video.read_bytes(), "video/mp4")
    created = api_client.post(f"{CRUN}/detect-face-video", json={"video_url": url, "num_frames": 6}).json()
    task_id = created["data"]["detect_task_id"]
    status, body = _crun_result(api_client, task_id)
    assert status == 200 and len(body["data"]["result"]["faces"]) == 2  # 12 detections, 2 people
    settings = get_settings()
    original, settings.detect_id_ttl = settings.detect_id_ttl, 0.0
    try:
        expired = api_client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": task_id}).json()
    finally:
        settings.detect_id_ttl = original
    assert expired["data"]["result"]["error"] == "detect_id expired"
    assert expired["data"]["result"]["id"] == body["data"]["result"]["id"]


def test_crun_failed_task_is_501(api_client, worker, media_server) -> None:
    url = serve(media_server, "text.jpg", b"plain text, not a picture\n" * 5, "image/jpeg")
    task_id = api_client.post(f"{CRUN}/detect-face-image", json={"image_url": url}).json()["data"]["detect_task_id"]
    status, body = _crun_result(api_client, task_id)
    assert status == 501 and body["code"] == 501 and body["message"] == "Generation Failed"
    assert body["data"]["status"] == "failed" and body["data"]["result"] is None
    assert body["data"]["error"].startswith("Unsupported media type")


# --- AceData face/analyze (seed 002) ------------------------------------------------------------------


def _group_sizes(shape: dict) -> dict:
    return {group: len(points) for group, points in shape.items()}


def test_face_analyze_returns_90_points(api_client, worker, media_server) -> None:
    url = serve(media_server, "astro.jpg", jpeg(astronaut_bgr()))
    response = api_client.post("/face/analyze", json={"image_url": url, "face_model_version": "2.0"})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["image_width", "image_height", "face_model_version", "face_shape_set"]
    assert (body["image_width"], body["image_height"], body["face_model_version"]) == (512, 512, "2.0")
    (shape,) = body["face_shape_set"]
    assert _group_sizes(shape) == ACEDATA_GROUP_SIZES and list(shape) == list(ACEDATA_GROUP_SIZES)
    assert all(
        set(point) == {"x", "y"} and all(isinstance(v, int) for v in point.values())
        for g in shape.values()
        for point in g
    )


def test_face_analyze_mode_and_rotation(api_client, worker, media_server) -> None:
    group = serve(media_server, "two.jpg", jpeg(two_heads()))
    assert len(api_client.post("/face/analyze", json={"image_url": group}).json()["face_shape_set"]) == 2
    largest = api_client.post("/face/analyze", json={"image_url": group, "mode": 1}).json()["face_shape_set"]
    assert len(largest) == 1 and largest[0]["nose"][0]["x"] < 360  # the left head is the larger one
    sideways = serve(media_server, "side.jpg", jpeg(cv2.rotate(astronaut_bgr(), cv2.ROTATE_90_CLOCKWISE)))
    assert api_client.post("/face/analyze", json={"image_url": sideways}).json()["face_shape_set"] == []
    rotated = api_client.post("/face/analyze", json={"image_url": sideways, "need_rotate_detection": 1}).json()
    (shape,) = rotated["face_shape_set"]
    # rotated clockwise, the face's left-right axis runs down the image: the pupils are one above the other
    left, right = shape["left_pupil"][0], shape["right_pupil"][0]
    assert abs(left["x"] - right["x"]) < abs(left["y"] - right["y"])


def test_face_analyze_fetch_failure(api_client, worker, media_server) -> None:
    media_server.expect_request("/none.jpg").respond_with_data("no", status=404)
    response = api_client.post("/face/analyze", json={"image_url": media_server.url_for("/none.jpg")})
    assert response.status_code == 500
    assert_same_shape(ACEDATA_ERROR, response.json())
    assert response.json()["error"] == {"code": "api_error", "message": "fetch failed"}


# --- crops live and die with their task ---------------------------------------------------------------


def test_crop_links_are_signed_and_deleted_with_the_task(api_client, worker) -> None:
    data = base64.b64encode(jpeg(astronaut_bgr())).decode()
    task_id = api_client.post("/v1/detect", json={"img": data, "return_face_url": True}).json()["detect_task_id"]
    task = wait_for_final(api_client, task_id)
    link = task["result"]["faces_obj"]["0"]["face_urls"][0]
    parts = urlsplit(link)
    assert api_client.get(f"{parts.path}?{parts.query}").status_code == 200
    tampered = parts.query.replace("sig=", "sig=0")
    assert api_client.get(f"{parts.path}?{tampered}").status_code == 404
    expired = __import__("re").sub(r"expires=\d+", "expires=1", parts.query)
    assert api_client.get(f"{parts.path}?{expired}").status_code == 404
    api_client.delete(f"/v1/detect/{task_id}")
    assert api_client.get(f"{parts.path}?{parts.query}").status_code == 404
