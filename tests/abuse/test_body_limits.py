"""Issue 10, weakness 1: bodies of any size were read into memory before auth. Against the API in its own
uvicorn process (Postgres and Redis behind it), with bodies generated while they are sent, never held whole.

The API answers before the body is sent: a refused request's response says `Connection: close`, so the
server stops reading and the client's sending stops at the socket buffers (a few MiB, not the body)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import psutil
import pytest

from api.auth import MISSING_KEY
from api.limits import json_body_limit
from api.uploads import upload_body_limit
from facequeue.core.settings import get_settings
from tests.support import api_process
from tests.test_tenants import new_key

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
GiB = 1024 * MiB
MANIFEST_LIMIT = 8 * MiB  # the live API's FACEQUEUE_MAX_MANIFEST_BYTES: small, so a test passes it quickly
URL = "https://example.com/a.jpg"
# A path and the body a real client would send there, on each API.
SUBMITS = {
    "native": "/v1/detect",
    "akool": "/interface/detect-api/detect_faces",
    "analyze_frames": "/interface/detect-api/faceswap/analyze_frames",
    "crun": "/api/v1/client/job/detect-face-image",
    "acedata": "/face/analyze",
}


class Upload:
    """A body made while it is sent, counting what the server let through."""

    def __init__(self, total: int, chunk: int = MiB) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        block = b"A" * self.chunk
        while self.sent < self.total:
            self.sent += self.chunk
            yield block


@pytest.fixture(scope="module")
def live_api(database: str, tmp_path_factory) -> Iterator[tuple[str, psutil.Process]]:
    """`uvicorn api.app:create_app` in a process of its own (its memory is measured), API keys on."""
    log_path = tmp_path_factory.mktemp("abuse") / "api.log"
    with api_process(log_path, FACEQUEUE_AUTH="on", FACEQUEUE_MAX_MANIFEST_BYTES=str(MANIFEST_LIMIT)) as (
        base,
        process,
    ):
        yield base, psutil.Process(process.pid)


@pytest.fixture(scope="module")
def key(live_api) -> str:
    return new_key("abuse-limits")


def post(url: str, upload: Upload, headers: list[tuple[str, str]], *, declared: bool = False) -> httpx.Response:
    """POST the upload chunked, or with its whole size declared up front."""
    length = [("content-length", str(upload.total))] if declared else []
    return httpx.post(url, content=upload, headers=[*headers, *length], timeout=30)


def error_of(api: str, response: httpx.Response) -> tuple[int, str]:
    """(HTTP status, message), checking the API's own error shape on the way."""
    body = response.json()
    if api == "native":
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}
        return response.status_code, body["error"]["message"]
    if api == "akool":
        assert set(body) == {"error_code", "error_msg", "faces_obj"} and body["error_code"] == 1
        return response.status_code, body["error_msg"]
    if api == "analyze_frames":
        assert set(body) == {"success", "error"} and body["success"] is False
        return response.status_code, body["error"]
    if api == "crun":
        assert set(body) == {"code", "message", "data"} and body["code"] == response.status_code
        return response.status_code, body["message"]
    assert set(body) == {"success", "error", "trace_id"} and body["success"] is False
    return response.status_code, body["error"]["message"]


def too_large(limit: int, what: str = "the request body") -> str:
    return f"{what} is larger than {limit} bytes"


JSON = ("content-type", "application/json")
JSONL = ("content-type", "application/x-ndjson")


def test_unauthenticated_1gib_upload_is_refused_without_reading_it(live_api) -> None:
    """300 MiB without a key once peaked the API at 759 MB for its 401; now its memory does not move."""
    base, api_process = live_api
    limit = json_body_limit(get_settings())
    for path in SUBMITS.values():  # warm-up: each route's first request (imports, pools) is not the upload's
        httpx.post(f"{base}{path}", json={}, timeout=10)
    with PeakRss(api_process) as rss:
        for api, path in SUBMITS.items():
            chunked, declared = Upload(GiB), Upload(GiB)
            assert error_of(api, post(f"{base}{path}", chunked, [JSON])) == (401, MISSING_KEY)
            # a declared size over the limit is refused before the key is even looked up
            assert error_of(api, post(f"{base}{path}", declared, [JSON], declared=True)) == (
                TOO_LARGE_STATUS[api],
                too_large(limit),
            )
            assert chunked.sent < 64 * MiB and declared.sent < 64 * MiB, (chunked.sent, declared.sent)
    print(
        f"\nAPI RSS over 10 unauthenticated 1 GiB uploads: before {rss.before / MiB:.1f} MiB, "
        f"peak {rss.peak / MiB:.1f} MiB, after {rss.after / MiB:.1f} MiB"
    )
    assert rss.peak - rss.before < 5 * MiB


class PeakRss:
    """The highest RSS of a process, sampled every 10 ms on a thread while the block runs."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.before = self.peak = self.after = process.memory_info().rss
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        self.after = self.process.memory_info().rss
        self.peak = max(self.peak, self.after)


# Each API's own status for a client error: Akool's detect_faces answers HTTP 200 with error_code 1,
# analyze_frames and AceData (token_mismatched) 400, crun mirrors its code (422: its seed lists no 413).
TOO_LARGE_STATUS = {"native": 413, "akool": 200, "analyze_frames": 400, "crun": 422, "acedata": 400}


@pytest.mark.parametrize("api", SUBMITS)
def test_declared_length_over_the_limit_is_refused_at_once(live_api, key, api: str) -> None:
    base, _ = live_api
    limit = json_body_limit(get_settings())
    upload = Upload(limit + MiB)
    response = post(f"{base}{SUBMITS[api]}", upload, [("x-api-key", key), JSON], declared=True)
    assert error_of(api, response) == (TOO_LARGE_STATUS[api], too_large(limit))
    assert response.headers["connection"] == "close"
    assert upload.sent < limit


@pytest.mark.parametrize("api", SUBMITS)
def test_chunked_body_is_cut_off_at_the_limit(live_api, key, api: str) -> None:
    """A chunked 100 MiB JSON body once got 400 "There was an error parsing the body" (a 500 on crun)."""
    base, _ = live_api
    limit = json_body_limit(get_settings())
    upload = Upload(100 * MiB)
    response = post(f"{base}{SUBMITS[api]}", upload, [("x-api-key", key), JSON])
    assert error_of(api, response) == (TOO_LARGE_STATUS[api], too_large(limit))
    assert response.headers["connection"] == "close"
    assert upload.sent < upload.total


def test_jsonl_has_its_own_limit_on_the_batch_route_only(live_api, key) -> None:
    base, _ = live_api
    for declared in (False, True):
        manifest = Upload(4 * MANIFEST_LIMIT)
        response = post(f"{base}/v1/batches", manifest, [("x-api-key", key), JSONL], declared=declared)
        assert error_of("native", response) == (413, too_large(MANIFEST_LIMIT, "the JSONL manifest"))
        assert manifest.sent < manifest.total
    # elsewhere a JSONL body is held to the JSON limit (it once skipped every check, on every route)
    json_limit = json_body_limit(get_settings())
    response = post(f"{base}/v1/detect", Upload(json_limit + 4 * MiB), [("x-api-key", key), JSONL])
    assert error_of("native", response) == (413, too_large(json_limit))


def test_the_first_of_two_content_types_decides_as_fastapi_reads_it(live_api, key) -> None:
    """The old guard read headers through dict(): the last Content-Type won, so a body FastAPI parsed as
    JSON (the first) passed as JSONL, which had no limit."""
    base, _ = live_api
    json_limit = json_body_limit(get_settings())
    response = post(f"{base}/v1/batches", Upload(json_limit + 4 * MiB), [("x-api-key", key), JSON, JSONL])
    assert error_of("native", response) == (413, too_large(json_limit))
    response = post(f"{base}/v1/batches", Upload(2 * MANIFEST_LIMIT), [("x-api-key", key), JSONL, JSON])
    assert error_of("native", response) == (413, too_large(MANIFEST_LIMIT, "the JSONL manifest"))


def test_bad_key_is_refused_before_the_body_and_bearer_wins(live_api, key) -> None:
    base, _ = live_api
    upload = Upload(GiB)
    headers = [("authorization", "Bearer fq_not-a-key"), ("x-api-key", key), JSON]
    assert error_of("native", post(f"{base}/v1/detect", upload, headers)) == (401, "Invalid API key")
    assert upload.sent < 64 * MiB


RAW_JPEG = ("content-type", "image/jpeg")
MULTIPART = ("content-type", "multipart/form-data; boundary=x")


class MultipartUpload(Upload):
    """One file part named `file` whose content never ends: the multipart parser takes it to the limit."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
        yield from super().__iter__()


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "declared"])
def test_an_upload_is_held_to_the_file_limit_itself(live_api, key, declared: bool) -> None:
    """The file as the body has no base64 to allow for: its limit is FACEQUEUE_MAX_UPLOAD_BYTES, plus the
    envelope for multipart."""
    base, _ = live_api
    limit = get_settings().max_upload_bytes
    for content_type, body_limit, upload in (
        (RAW_JPEG, limit, Upload(4 * limit)),
        (MULTIPART, upload_body_limit("multipart", limit), MultipartUpload(4 * limit)),
    ):
        response = post(f"{base}/v1/detect", upload, [("x-api-key", key), content_type], declared=declared)
        assert error_of("native", response) == (413, too_large(body_limit, "the upload"))
        assert response.headers["connection"] == "close"
        assert upload.sent < upload.total


def test_an_upload_without_a_key_or_with_a_bad_option_is_refused_before_its_body(live_api, key) -> None:
    """No key: refused from the headers, the connection closed. A bad option: refused before the app reads the
    body (uvicorn drains it to keep the connection, so the API's memory shows whether it was read)."""
    base, api_process = live_api
    upload = Upload(20 * MiB)
    assert error_of("native", post(f"{base}/v1/detect", upload, [RAW_JPEG])) == (401, MISSING_KEY)
    assert upload.sent < upload.total
    post(f"{base}/v1/detect?max_side=1", Upload(MiB), [("x-api-key", key), RAW_JPEG])  # warm-up: the route's imports
    with PeakRss(api_process) as rss:
        response = post(f"{base}/v1/detect?max_side=1", Upload(20 * MiB), [("x-api-key", key), RAW_JPEG])
    assert error_of("native", response) == (422, "max_side: Input should be greater than or equal to 64")
    assert rss.peak - rss.before < 5 * MiB
