"""Issue 10, weakness 7 (the smaller gaps): frame_urls without a cap, URLs the workers' SSRF guard refuses
accepted at submit, FastAPI's {"detail"} for 404 and 405."""

from __future__ import annotations

import pytest

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import get_settings
from facequeue.core.ssrf import check_url

pytestmark = pytest.mark.integration

ANALYZE_FRAMES = "/interface/detect-api/faceswap/analyze_frames"
CRUN_IMAGE = "/api/v1/client/job/detect-face-image"


def test_frame_urls_are_capped_at_100(api_client) -> None:
    """5,000 were accepted, each one a download and a detection."""
    urls = [f"https://example.com/{i}.jpg" for i in range(5000)]
    message = "frame_urls: List should have at most 100 items after validation, not 5000"
    native = api_client.post("/v1/detect", json={"frame_urls": urls})
    assert native.status_code == 422
    assert native.json() == {"error": {"code": "validation_error", "message": message, "field": "frame_urls"}}
    akool = api_client.post(ANALYZE_FRAMES, json={"frame_urls": urls})
    assert (akool.status_code, akool.json()) == (400, {"success": False, "error": message})
    assert api_client.post("/v1/detect", json={"frame_urls": urls[:100]}).status_code == 202


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        # forms httpx (the workers' parser) refuses: octal and other malformed dotted quads
        ("http://0177.0.0.1/a.jpg", "invalid_url", "Invalid URL format"),
        ("http://012.0.0.1/a.jpg", "invalid_url", "Invalid URL format"),
        ("http://[::1/a.jpg", "invalid_url", "Invalid URL format"),
        ("http://example.com:99999/a.jpg", "invalid_url", "Invalid URL format"),
        # forms the resolver reads as a private address (tests allow only 127.0.0.1/32)
        ("http://0x0a.1/a.jpg", "url_forbidden", "Failed to download media from URL: address 10.0.0.1 is private"),
        (
            "http://2886729729/a.jpg",
            "url_forbidden",
            "Failed to download media from URL: address 172.16.0.1 is private",
        ),
        (
            "http://169.254.169.254/",
            "url_forbidden",
            "Failed to download media from URL: address 169.254.169.254 is link-local",
        ),
        (
            "http://[::ffff:10.0.0.1]/a.jpg",
            "url_forbidden",
            "Failed to download media from URL: address ::ffff:a00:1 is private (embeds 10.0.0.1)",
        ),
    ],
)
def test_urls_the_workers_would_refuse_are_refused_at_submit(api_client, url: str, code: str, message: str) -> None:
    """`http://0177.0.0.1` got a 202 and failed in the worker; now the submit fails with the worker's code."""
    with pytest.raises(TaskError) as worker_says:  # the same URL, through the workers' own guard
        check_url(url, get_settings())
    assert worker_says.value.code == ErrorCode(code)
    if code == "url_forbidden":
        assert worker_says.value.message == message
    native = api_client.post("/v1/detect", json={"url": url})
    assert (native.status_code, native.json()) == (422, {"error": {"code": code, "message": message, "field": "url"}})
    frames = api_client.post("/v1/detect", json={"frame_urls": ["https://example.com/a.jpg", url]})
    assert frames.json()["error"]["code"] == code
    crun = api_client.post(CRUN_IMAGE, json={"image_url": url})
    assert (crun.status_code, crun.json()) == (422, {"code": 422, "message": message, "data": None})


def test_allowed_addresses_pass_at_submit_as_in_the_worker(api_client) -> None:
    """127.1 is 127.0.0.1, allow-listed here (FACEQUEUE_ALLOWED_HOSTS=127.0.0.1/32): accepted by both."""
    assert check_url("http://127.1/a.jpg", get_settings()).ips[0].exploded == "127.0.0.1"
    assert api_client.post("/v1/detect", json={"url": "http://127.1/a.jpg"}).status_code == 202


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        (
            "GET",
            "/v1/nothing-here",
            404,
            {"error": {"code": "not_found", "message": "No endpoint matches GET /v1/nothing-here", "field": None}},
        ),
        (
            "GET",
            "/v1/batches",
            405,
            {
                "error": {
                    "code": "method_not_allowed",
                    "message": "GET is not allowed on /v1/batches (allowed: POST)",
                    "field": None,
                }
            },
        ),
        (
            "GET",
            "/api/v1/client/job/nothing-here",
            404,
            {"code": 404, "message": "No endpoint matches GET /api/v1/client/job/nothing-here", "data": None},
        ),
        # the compat APIs answer what is not one of their client errors in their own status
        (
            "GET",
            CRUN_IMAGE,
            422,
            {"code": 422, "message": f"GET is not allowed on {CRUN_IMAGE} (allowed: POST)", "data": None},
        ),
        (
            "PUT",
            ANALYZE_FRAMES,
            400,
            {"success": False, "error": f"PUT is not allowed on {ANALYZE_FRAMES} (allowed: POST)"},
        ),
        (
            "GET",
            "/interface/detect-api/detect_faces",
            200,
            {
                "error_code": 1,
                "error_msg": "GET is not allowed on /interface/detect-api/detect_faces (allowed: POST)",
                "faces_obj": {},
            },
        ),
    ],
)
def test_404_and_405_answer_in_the_api_shape(api_client, method: str, path: str, status: int, body: dict) -> None:
    response = api_client.request(method, path)
    assert (response.status_code, response.json()) == (status, body)
    if "not allowed" in str(body):
        assert response.headers["allow"] == "POST"


def test_acedata_404_and_405(api_client) -> None:
    for method, path, message in (
        ("GET", "/face/analyze", "GET is not allowed on /face/analyze (allowed: POST)"),
        ("POST", "/face/compare", "No endpoint matches POST /face/compare"),
    ):
        response = api_client.request(method, path)
        assert response.status_code == 400
        assert response.json()["error"] == {"code": "token_mismatched", "message": message}
