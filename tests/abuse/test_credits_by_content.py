"""Issue 10, weakness 4: credits were priced by the URL's extension. A 75-frame video served as
`video.jpg` with num_frames 100 was reserved 1 credit (an image), processed all 75 frames and was
charged 1. Now the worker tops the reservation up to what the bytes need before any frame runs."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from db.models import DetectTask
from facequeue.cli.demo import moving_face_frames, write_video
from facequeue.plumbing.sessions import session_scope
from tests.support import wait_for_final
from tests.test_tenants import balance, bearer, make_client, new_key

pytestmark = pytest.mark.integration

VIDEO_FRAMES = 75
FINISH_WITHIN = 300  # seconds for 75 frames on one pool process: ~20 s alone, minutes on a loaded CI machine


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    path = write_video(tmp_path_factory.mktemp("credits") / "clip.mp4", moving_face_frames(count=VIDEO_FRAMES))
    return path.read_bytes()


@pytest.fixture
def disguised_video_url(media_server, video_bytes: bytes) -> str:
    """A real HTTP server answering `/video.jpg` with an MP4, labelled as a JPEG."""
    media_server.expect_request("/video.jpg").respond_with_data(video_bytes, content_type="image/jpeg")
    return media_server.url_for("/video.jpg")


@pytest.fixture
def auth_app(clean_state):
    with make_client() as client:  # API keys on; entered, so its lifespan runs
        yield client.app


def tenant_client(app, key: str) -> TestClient:
    return TestClient(app, headers=bearer(key))


def credits_of(task_id: str) -> tuple[int, str]:
    with session_scope() as session:
        task = session.get(DetectTask, task_id)
        return task.cost, task.credit_state


def submit(client: TestClient, body: dict) -> str:
    response = client.post("/v1/detect", json={**body, "num_frames": 100})
    assert response.status_code == 202, response.text
    return response.json()["detect_task_id"]


def test_video_named_jpg_is_charged_every_sampled_frame(auth_app, worker, disguised_video_url: str) -> None:
    client = tenant_client(auth_app, new_key("content-priced", credits=100))
    task_id = submit(client, {"url": disguised_video_url})
    assert balance("content-priced") == 99  # the extension says image: 1 reserved on submit
    task = wait_for_final(client, task_id, FINISH_WITHIN)
    assert task["status"] == "succeeded", task
    assert task["kind"] == "video"
    assert task["progress"] == {"done": VIDEO_FRAMES, "total": VIDEO_FRAMES}
    assert task["result"]["frame_count"] == VIDEO_FRAMES
    assert credits_of(task_id) == (VIDEO_FRAMES, "settled")  # topped up from 1 to 75, all of it used
    assert balance("content-priced") == 100 - VIDEO_FRAMES


def test_video_named_jpg_without_the_credits_fails_before_any_frame(auth_app, worker, disguised_video_url: str) -> None:
    client = tenant_client(auth_app, new_key("content-poor", credits=10))
    task_id = submit(client, {"url": disguised_video_url})
    assert balance("content-poor") == 9
    task = wait_for_final(client, task_id, FINISH_WITHIN)
    assert task["status"] == "failed"
    assert task["error"] == {
        "code": "insufficient_credits",
        "message": f"Insufficient Credits: this video needs {VIDEO_FRAMES} credits, 1 were reserved, "
        f"and the balance does not cover the other {VIDEO_FRAMES - 1}",
    }
    assert task["progress"] == {"done": 0, "total": VIDEO_FRAMES}
    assert task["result"] is None
    assert "detect" not in task["timings"]  # no frame reached a detector
    assert credits_of(task_id) == (1, "refunded")  # the failed top-up left the reservation as it was
    assert balance("content-poor") == 10


def test_upload_reserved_enough_on_submit_and_is_charged_what_it_used(auth_app, worker, tmp_path) -> None:
    """Without a URL there is no hint: the submit reserves all of num_frames, so nothing is topped up,
    and a 10-frame video is charged 10 of the 100 reserved."""
    video = write_video(tmp_path / "short.mp4", moving_face_frames(count=10)).read_bytes()
    client = tenant_client(auth_app, new_key("content-upload", credits=100))
    task_id = submit(client, {"img": base64.b64encode(video).decode()})
    assert balance("content-upload") == 0
    task = wait_for_final(client, task_id, FINISH_WITHIN)
    assert task["status"] == "succeeded", task
    assert task["result"]["frame_count"] == 10
    assert credits_of(task_id) == (100, "settled")
    assert balance("content-upload") == 90
