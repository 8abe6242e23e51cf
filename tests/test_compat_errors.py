"""Every compat API's validation errors, in its own shape (no worker needed: nothing gets queued)."""

from __future__ import annotations

import uuid

import pytest

from tests.contract_examples import ACEDATA_ERROR, AKOOL_ANALYZE_FRAMES_ERROR, assert_same_shape

pytestmark = pytest.mark.integration

DETECT_FACES = "/interface/detect-api/detect_faces"
ANALYZE_FRAMES = "/interface/detect-api/faceswap/analyze_frames"
CRUN = "/api/v1/client/job"
FACE_ANALYZE = "/face/analyze"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Either 'url' or 'img' parameter must be provided"),
        ({"url": None, "img": ""}, "Either 'url' or 'img' parameter must be provided"),
        ({"url": "example.com/a.jpg"}, "Invalid URL format"),
        ({"url": "ftp://example.com/a.jpg", "img": "aGk="}, "Invalid URL format"),
        (
            {"url": "https://example.com/a.mp4", "num_frames": 0},
            "num_frames: Input should be greater than or equal to 1",
        ),
        (
            {"url": "https://example.com/a.mp4", "num_frames": 101},
            "num_frames: Input should be less than or equal to 100",
        ),
        ({"img": "not base64 at all!"}, "img is not valid base64"),
    ],
)
def test_detect_faces_errors(api_client, body: dict, message: str) -> None:
    response = api_client.post(DETECT_FACES, json=body)
    assert response.status_code == 200
    payload = response.json()
    assert list(payload) == ["error_code", "error_msg", "faces_obj"]
    assert payload["error_code"] == 1 and payload["faces_obj"] == {}
    assert payload["error_msg"].startswith(message)


def test_detect_faces_malformed_json(api_client) -> None:
    response = api_client.post(DETECT_FACES, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["error_code"] == 1 and "JSON" in response.json()["error_msg"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "frame_urls is required and must not be empty"),
        ({"frame_urls": []}, "frame_urls is required and must not be empty"),
        (
            {"frame_urls": ["https://e.com/a.jpg", "https://e.com/b.jpg"], "timestamps": [0.5]},
            "timestamps length (1) must match frame_urls length (2)",
        ),
        (
            {"frame_urls": ["https://e.com/a.jpg"], "expand_ratio": 1.5},
            "expand_ratio: Input should be less than or equal to 1",
        ),
        (
            {"frame_urls": ["https://e.com/a.jpg"], "expand_ratio": -0.1},
            "expand_ratio: Input should be greater than or equal to 0",
        ),
        ({"frame_urls": ["not a url"]}, "Invalid URL format"),
    ],
)
def test_analyze_frames_errors(api_client, body: dict, message: str) -> None:
    response = api_client.post(ANALYZE_FRAMES, json=body)
    assert response.status_code == 400
    assert_same_shape(AKOOL_ANALYZE_FRAMES_ERROR, response.json())
    assert response.json() == {"success": False, "error": message}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("detect-face-image", {}, "image_url: Field required"),
        ("detect-face-image", {"image_url": "nope"}, "Invalid URL format"),
        ("detect-face-image", {"image_url": "https://e.com/a.jpg", "callback_url": "nope"}, "Invalid URL format"),
        (
            "detect-face-video",
            {"video_url": "https://e.com/a.mp4", "num_frames": 101},
            "num_frames: Input should be less than or equal to 100",
        ),
        ("detect-face-video", {}, "video_url: Field required"),
    ],
)
def test_crun_create_validation_is_422(api_client, path: str, body: dict, message: str) -> None:
    response = api_client.post(f"{CRUN}/{path}", json=body)
    assert response.status_code == 422
    assert response.json() == {"code": 422, "message": message, "data": None}


def test_crun_result_errors(api_client) -> None:
    missing = api_client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": "nope"})
    assert missing.status_code == 404
    assert missing.json() == {"code": 404, "message": "detect task nope not found", "data": None}
    no_param = api_client.get(f"{CRUN}/detect-face-result")
    assert no_param.status_code == 422
    assert no_param.json() == {"code": 422, "message": "detect_task_id: Field required", "data": None}


def test_crun_create_answers_the_seed_shape(api_client) -> None:
    from tests.contract_examples import CRUN_CREATE

    response = api_client.post(f"{CRUN}/detect-face-image", json={"image_url": "https://e.com/a.jpg"})
    assert response.status_code == 200
    assert_same_shape(CRUN_CREATE, response.json())
    assert response.json()["code"] == 200 and response.json()["message"] == "success"
    task_id = response.json()["data"]["detect_task_id"]
    pending = api_client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": task_id}).json()
    assert pending == {
        "code": 200,
        "message": "success",
        "data": {"detect_task_id": task_id, "status": "starting", "error": None, "result": None},
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({}, 400, "token_mismatched", "image_url: Field required"),
        ({"image_url": "nope"}, 400, "token_mismatched", "Invalid URL format"),
        ({"image_url": "https://e.com/a.jpg", "mode": 2}, 400, "token_mismatched", "mode: Input should be 0 or 1"),
        (
            {"image_url": "https://e.com/a.jpg", "need_rotate_detection": 3},
            400,
            "token_mismatched",
            "need_rotate_detection: Input should be 0 or 1",
        ),
        (
            {"image_url": "https://e.com/a.jpg", "face_model_version": "9.9"},
            400,
            "api_not_implemented",
            "face_model_version 9.9 is not implemented (supported: 2.0, 3.0)",
        ),
    ],
)
def test_face_analyze_errors(api_client, body: dict, status: int, code: str, message: str) -> None:
    response = api_client.post(FACE_ANALYZE, json=body)
    assert response.status_code == status
    payload = response.json()
    assert_same_shape(ACEDATA_ERROR, payload)
    assert payload["success"] is False and payload["error"] == {"code": code, "message": message}
    assert uuid.UUID(payload["trace_id"]).version == 4


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ({"type": "missing", "msg": "pydantic's words"}, "Field required"),
        ({"type": "greater_than_equal", "msg": "x", "ctx": {"ge": 0.0}}, "Input should be greater than or equal to 0"),
        (
            {"type": "greater_than_equal", "msg": "x", "ctx": {"ge": 0.05}},
            "Input should be greater than or equal to 0.05",
        ),
        (
            {"type": "less_than_equal", "msg": "pydantic's words", "ctx": {"le": 100}},
            "Input should be less than or equal to 100",
        ),
        ({"type": "string_too_long", "msg": "x", "ctx": {"max_length": 1}}, "String should have at most 1 character"),
        (
            {"type": "string_too_long", "msg": "x", "ctx": {"max_length": 2048}},
            "String should have at most 2048 characters",
        ),
        ({"type": "less_than_equal", "msg": "pydantic's words", "ctx": {}}, "pydantic's words"),  # context unknown
        ({"type": "a_new_kind", "msg": "pydantic's words"}, "pydantic's words"),
    ],
)
def test_validation_problems_are_worded_by_us_not_by_pydantic(problem: dict, message: str) -> None:
    from api.compat import problem_message

    assert problem_message(problem) == message
