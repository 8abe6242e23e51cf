"""POST /v1/detect with the file itself as the body, or as multipart/form-data (api/uploads.py): the same task
as base64 JSON, the options from the query string, and a precise refusal for every malformed upload."""

from __future__ import annotations

import base64

import cv2
import pytest

from facequeue.cli.demo import astronaut_bgr
from tests.support import wait_for_final

pytestmark = pytest.mark.integration

JPEG = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
RAW = {"content": JPEG, "headers": {"Content-Type": "image/jpeg"}}


def _error(response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["message"], error["field"]


def test_raw_and_multipart_uploads_find_the_faces_base64_json_finds(api_client, worker) -> None:
    submitted = {
        "json": api_client.post("/v1/detect", json={"img": base64.b64encode(JPEG).decode()}),
        "raw": api_client.post("/v1/detect", **RAW),
        "octet-stream": api_client.post(
            "/v1/detect", content=JPEG, headers={"Content-Type": "application/octet-stream"}
        ),
        "multipart": api_client.post("/v1/detect", files={"file": ("astronaut.jpg", JPEG, "image/jpeg")}),
    }
    assert {form: response.status_code for form, response in submitted.items()} == dict.fromkeys(submitted, 202)
    tasks = {
        form: wait_for_final(api_client, response.json()["detect_task_id"]) for form, response in submitted.items()
    }
    assert {form: task["status"] for form, task in tasks.items()} == dict.fromkeys(submitted, "succeeded")
    regions = {form: task["result"]["faces_obj"]["0"]["region"] for form, task in tasks.items()}
    assert len(regions["json"]) == 1  # the astronaut
    assert regions["raw"] == regions["octet-stream"] == regions["multipart"] == regions["json"]


def test_options_come_from_the_query_string(api_client, worker) -> None:
    query = {"max_side": 320, "landmarks": "90", "return_face_url": "true", "callback_url": "https://example.com/h"}
    response = api_client.post("/v1/detect", params=query, **RAW)
    assert response.status_code == 202
    task = wait_for_final(api_client, response.json()["detect_task_id"])
    assert task["status"] == "succeeded", task["error"]
    frame = task["result"]["faces_obj"]["0"]
    assert task["result"]["detector"]["max_side"] == 320
    assert len(frame["face_urls"]) == len(frame["region"]) == 1
    assert len(task["result"]["face_shape_set"]["0"]) == 1  # the 90-point shape


@pytest.mark.parametrize(
    ("query", "message", "field"),
    [
        (
            {"max_side": "big"},
            "max_side: Input should be a valid integer, unable to parse string as an integer",
            "max_side",
        ),
        ({"frame_urls": "https://e.com/a.jpg"}, "frame_urls: Extra inputs are not permitted", "frame_urls"),
        ({"url": "https://e.com/a.jpg"}, "url: Extra inputs are not permitted", "url"),
        (
            {"detector": "accurate", "tiling": "true"},
            "tiling runs YuNet on its tiles: use detector local, or no tiling",
            "detector",
        ),
    ],
)
def test_a_bad_option_is_refused_and_nothing_is_stored(api_client, query: dict, message: str, field: str) -> None:
    assert _error(api_client.post("/v1/detect", params=query, **RAW)) == (422, message, field)
    assert api_client.get("/v1/detect").json()["items"] == []


@pytest.mark.parametrize(
    ("request_args", "message"),
    [
        ({"content": b"", "headers": {"Content-Type": "image/png"}}, "the uploaded file is empty"),
        ({"files": {"image": ("a.jpg", JPEG, "image/jpeg")}}, "multipart body has no file part named 'file'"),
        ({"files": {"file": ("a.jpg", b"", "image/jpeg")}}, "the uploaded file is empty"),
        (
            {"files": {"file": ("a.jpg", JPEG, "image/jpeg")}, "data": {"max_side": "320"}},
            "multipart body: Too many fields. Maximum number of fields is 0. (send one part, the file, named 'file'; "
            "options go in the query string)",
        ),
        (
            {"files": [("file", ("a.jpg", JPEG, "image/jpeg")), ("file", ("b.jpg", JPEG, "image/jpeg"))]},
            "multipart body: Too many files. Maximum number of files is 1. (send one part, the file, named 'file'; "
            "options go in the query string)",
        ),
        (
            {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
            "multipart body: Missing boundary in multipart. (send one part, the file, named 'file'; options go in "
            "the query string)",
        ),
    ],
    ids=["empty", "no-file-part", "empty-file-part", "a-field", "two-files", "no-boundary"],
)
def test_a_malformed_upload_is_refused_with_what_is_wrong(api_client, request_args: dict, message: str) -> None:
    assert _error(api_client.post("/v1/detect", **request_args)) == (422, message, "file")
    assert api_client.get("/v1/detect").json()["items"] == []


def test_bytes_that_are_no_media_end_in_a_failed_task(api_client, worker) -> None:
    response = api_client.post("/v1/detect", content=b"not an image at all", headers={"Content-Type": "image/jpeg"})
    task = wait_for_final(api_client, response.json()["detect_task_id"])
    assert (task["status"], task["error"]["code"]) == ("failed", "unsupported_media")


def test_an_idempotency_key_binds_the_bytes_in_any_form(api_client) -> None:
    key = {"Idempotency-Key": "upload-7"}
    first = api_client.post("/v1/detect", content=JPEG, headers={"Content-Type": "image/jpeg", **key})
    as_json = api_client.post("/v1/detect", json={"img": base64.b64encode(JPEG).decode()}, headers=key)
    as_multipart = api_client.post("/v1/detect", files={"file": ("a.jpg", JPEG, "image/jpeg")}, headers=key)
    assert first.status_code == as_json.status_code == as_multipart.status_code == 202
    assert first.json()["detect_task_id"] == as_json.json()["detect_task_id"] == as_multipart.json()["detect_task_id"]
    assert as_json.headers["Idempotent-Replayed"] == as_multipart.headers["Idempotent-Replayed"] == "true"
    other = api_client.post("/v1/detect", content=JPEG + b"\0", headers={"Content-Type": "image/jpeg", **key})
    assert other.status_code == 409


def test_the_document_describes_both_bodies_and_the_query_options(api_client) -> None:
    operation = api_client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]
    content = operation["requestBody"]["content"]
    assert list(content) == ["application/json", "application/octet-stream", "multipart/form-data"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    query = {parameter["name"] for parameter in operation["parameters"] if parameter["in"] == "query"}
    assert {"max_side", "detector", "min_score", "persons", "callback_url"} <= query
    assert not query & {"url", "img", "frame_urls", "timestamps"}
