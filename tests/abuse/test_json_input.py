"""Issue 10, weakness 2: deeply nested or undecodable JSON gave a 500 (RecursionError, UnicodeDecodeError in
the batch route; crun and Akool turned FastAPI's 400 into a 500 or "Internal server error"). Now a 422 or the
API's own client-error status, with a message that says what is wrong, in every API's shape."""

from __future__ import annotations

import json

import pytest

from api.json_input import MAX_JSON_DEPTH

pytestmark = pytest.mark.integration

TOO_DEEP = "[" * 3000 + "]" * 3000  # past Python's recursion limit: json.loads raises RecursionError
JUST_TOO_DEEP = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)  # parses; the cap refuses it
UNDECODABLE = b"\xff\xfe\x00"  # a UTF-16 byte-order mark, then half a character
ITEM = {"url": "https://example.com/a.jpg"}


def nested_too_deep(name: str) -> str:
    return f"{name} nests arrays or objects deeper than {MAX_JSON_DEPTH} levels"


def native_error(response) -> tuple[int, dict]:
    return response.status_code, response.json()["error"]


@pytest.mark.parametrize("deep", [TOO_DEEP, JUST_TOO_DEEP])
def test_deep_batch_items_and_defaults(api_client, deep: str) -> None:
    expected = (422, {"code": "invalid_json", "message": nested_too_deep("body"), "field": "body"})
    for body in (
        f'{{"items": [{deep}]}}',
        f'{{"items": [{json.dumps(ITEM)}], "defaults": {{"num_frames": {deep}}}}}',
    ):
        response = api_client.post("/v1/batches", content=body, headers={"content-type": "application/json"})
        assert native_error(response) == expected


@pytest.mark.parametrize("deep", [TOO_DEEP, JUST_TOO_DEEP])
def test_deep_jsonl_line_and_defaults_query(api_client, deep: str) -> None:
    manifest = f"{json.dumps(ITEM)}\n{deep}\n"
    jsonl = {"content-type": "application/x-ndjson"}
    line = api_client.post("/v1/batches", content=manifest, headers=jsonl)
    assert native_error(line) == (
        422,
        {"code": "invalid_json", "message": nested_too_deep("line 2 of the manifest"), "field": "items"},
    )
    query = api_client.post("/v1/batches", content=json.dumps(ITEM), headers=jsonl, params={"defaults": deep})
    assert native_error(query) == (
        422,
        {"code": "invalid_json", "message": nested_too_deep("defaults"), "field": "defaults"},
    )


def test_batch_defaults_and_callback_of_the_wrong_type(api_client) -> None:
    """Both reached code that assumed their type (a dict merge, a string strip): 500s."""
    defaults = api_client.post("/v1/batches", json={"items": [ITEM], "defaults": [1]})
    assert native_error(defaults) == (
        422,
        {"code": "validation_error", "message": "defaults must be a JSON object", "field": "defaults"},
    )
    callback = api_client.post("/v1/batches", json={"items": [ITEM], "callback_url": 7})
    assert native_error(callback) == (
        422,
        {"code": "validation_error", "message": "callback_url must be a string", "field": "callback_url"},
    )


def test_native_bodies_too_deep_or_undecodable(api_client) -> None:
    undecodable = "body is not valid JSON: byte 2 is not UTF-8 text"
    for path in ("/v1/detect", "/v1/batches"):
        for body, message in ((TOO_DEEP, nested_too_deep("body")), (UNDECODABLE, undecodable)):
            response = api_client.post(path, content=body, headers={"content-type": "application/json"})
            assert native_error(response) == (422, {"code": "invalid_json", "message": message, "field": "body"})


COMPAT_PATHS = {
    "akool": "/interface/detect-api/detect_faces",
    "analyze_frames": "/interface/detect-api/faceswap/analyze_frames",
    "crun_image": "/api/v1/client/job/detect-face-image",
    "crun_video": "/api/v1/client/job/detect-face-video",
    "acedata": "/face/analyze",
}


def compat_error(api: str, response) -> tuple[int, str]:
    body = response.json()
    if api == "akool":
        assert body["error_code"] == 1 and body["faces_obj"] == {}
        return response.status_code, body["error_msg"]
    if api == "analyze_frames":
        assert set(body) == {"success", "error"} and body["success"] is False
        return response.status_code, body["error"]
    if api.startswith("crun"):
        assert body["code"] == response.status_code and body["data"] is None
        return response.status_code, body["message"]
    assert body["success"] is False and body["error"]["code"] == "token_mismatched" and body["trace_id"]
    return response.status_code, body["error"]["message"]


# Each compat API's status for a client error (never a 500 any more).
CLIENT_ERROR_STATUS = {"akool": 200, "analyze_frames": 400, "crun_image": 422, "crun_video": 422, "acedata": 400}


@pytest.mark.parametrize("api", COMPAT_PATHS)
def test_compat_bodies_too_deep_or_undecodable(api_client, api: str) -> None:
    status = CLIENT_ERROR_STATUS[api]
    for body, message in (
        (TOO_DEEP, nested_too_deep("body")),
        (UNDECODABLE, "body is not valid JSON: byte 2 is not UTF-8 text"),
        (
            b"\xff" + json.dumps({"image_url": "https://e.com/a.jpg"}).encode(),
            "body is not valid JSON: byte 0 is not UTF-8 text",
        ),
        (b'{"image_url": ', "body is not valid JSON: Expecting value (character 14)"),
    ):
        response = api_client.post(COMPAT_PATHS[api], content=body, headers={"content-type": "application/json"})
        assert compat_error(api, response) == (status, message)
