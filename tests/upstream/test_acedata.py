"""AceData face/analyze (seed 002) against a real HTTP server that fetches image_url like the real API."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from tests.upstream.fake_upstreams import (
    ACEDATA_PATH,
    API_KEY,
    SEED_002_IMAGE_SIZE,
    AceDataAnalyze,
    FaceMeshShapes,
    FakeUpstream,
    acedata_error,
    fixed,
    jpeg_bytes,
    seed_example_shapes,
)
from tests.upstream.support import iou, local_faces, point_distances
from workers.detectors.upstream.acedata import AceDataUpstream
from workers.detectors.upstream.checks import UPSTREAM_SCORE
from workers.detectors.upstream.failures import Failure, UpstreamError


@pytest.fixture
def acedata(make_settings, sleeps) -> Iterator[AceDataUpstream]:
    adapter = AceDataUpstream(make_settings(upstream_protocol="acedata", upstream_max_attempts=2), sleep=sleeps.append)
    yield adapter
    adapter.close()


@pytest.fixture
def photo(upstream, astronaut) -> tuple[np.ndarray, str]:
    """A 690x920 photo (the seed example's size) served at a URL the upstream can fetch, as it decodes."""
    image = cv2.resize(astronaut, SEED_002_IMAGE_SIZE, interpolation=cv2.INTER_AREA)
    data = jpeg_bytes(image)
    upstream.server.expect_request(upstream.prefix + "/photo.jpg").respond_with_data(data, content_type="image/jpeg")
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), upstream.url_for("/photo.jpg")


def test_seed_example_face_becomes_a_box_and_five_points(acedata, upstream, photo):
    image, url = photo
    fake = FakeUpstream(AceDataAnalyze(seed_example_shapes))
    upstream.serve(ACEDATA_PATH, fake)

    [face] = acedata.detect(image, max_side=1280, source_url=url)

    # x: face_profile 283..396; y: eyebrows' top 192 .. chin 307
    assert face.box == (283.0, 192.0, 113.0, 115.0)
    # left pupil, right pupil, nose[0] (tip), mouth[0] and mouth[6] (corners)
    assert face.landmarks.tolist() == [[310, 211], [357, 225], [311, 242], [296, 262], [335, 277]]
    assert face.score == UPSTREAM_SCORE
    [request] = fake.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.body == {"image_url": url}


def test_real_face_shapes_agree_with_local_yunet(acedata, upstream, astronaut):
    upstream.server.expect_request(upstream.prefix + "/astronaut.jpg").respond_with_data(jpeg_bytes(astronaut))
    upstream.serve(ACEDATA_PATH, AceDataAnalyze(FaceMeshShapes()))

    [face] = acedata.detect(astronaut, max_side=1280, source_url=upstream.url_for("/astronaut.jpg"))

    [expected] = local_faces(astronaut)
    assert iou(face.box, expected.box) > 0.6  # brows to chin, where YuNet's box includes the forehead
    # eyes, nose tip and mouth corners land on YuNet's, in the same order
    assert point_distances(face, expected).max() < 8.0


def test_frame_without_url_is_not_sent(acedata, upstream, astronaut):
    fake = FakeUpstream(AceDataAnalyze(seed_example_shapes))
    upstream.serve(ACEDATA_PATH, fake)

    with pytest.raises(UpstreamError) as raised:
        acedata.detect(astronaut, max_side=1280, source_url=None)

    assert raised.value.failure is Failure.CANNOT_SERVE
    assert "face/analyze takes only image_url" in raised.value.detail
    assert fake.requests == []


def test_invalid_token_is_reported_with_code_and_trace_and_not_retried(make_settings, upstream, photo, sleeps):
    image, url = photo
    fake = FakeUpstream(AceDataAnalyze(seed_example_shapes))
    upstream.serve(ACEDATA_PATH, fake)
    wrong_key = AceDataUpstream(make_settings(upstream_protocol="acedata", upstream_api_key="wrong"), sleeps.append)

    with pytest.raises(UpstreamError) as raised:
        wrong_key.detect(image, max_side=1280, source_url=url)

    assert raised.value.failure is Failure.HTTP_STATUS
    assert raised.value.detail.startswith(
        "upstream acedata answered HTTP 401: invalid_token: invalid or missing authorization token (trace_id "
    )
    assert len(fake.requests) == 1
    wrong_key.close()


def test_unfetchable_image_is_a_server_error_retried_then_reported(acedata, upstream, sleeps, astronaut):
    fake = FakeUpstream(AceDataAnalyze(seed_example_shapes))
    upstream.serve(ACEDATA_PATH, fake)

    with pytest.raises(UpstreamError) as raised:
        acedata.detect(astronaut, max_side=1280, source_url=upstream.url_for("/missing.jpg"))

    assert raised.value.failure is Failure.SERVER_ERROR
    assert raised.value.detail.startswith("upstream acedata answered HTTP 500: api_error: fetch failed (trace_id ")
    assert raised.value.detail.endswith("(gave up after 2 attempts)")
    assert len(fake.requests) == 2 and len(sleeps) == 1


SEED_FACE = seed_example_shapes(None)[0]


def _seed_response(**changes: object) -> dict:
    """The seed's answer with some groups replaced, or dropped where the change is None."""
    face = {**copy.deepcopy(SEED_FACE), **changes}
    width, height = SEED_002_IMAGE_SIZE
    shape = {group: points for group, points in face.items() if points is not None}
    return {"image_width": width, "image_height": height, "face_shape_set": [shape]}


BAD_ANSWERS = {
    "no image_width": (
        {"image_height": 920, "face_shape_set": []},
        Failure.MALFORMED,
        "returned a malformed response: image_width is missing",
    ),
    "other image size": (
        {**_seed_response(), "image_width": 512, "image_height": 512},
        Failure.REJECTED,
        "analysed a 512x512 image, but the task's image is 690x920",
    ),
    "short mouth": (
        _seed_response(mouth=SEED_FACE["mouth"][:20]),
        Failure.MALFORMED,
        "returned a malformed response: face_shape_set[0].mouth has 20 points, expected 22",
    ),
    "text coordinate": (
        _seed_response(nose=[{"x": "311", "y": 242}] + SEED_FACE["nose"][1:]),
        Failure.MALFORMED,
        "returned a malformed response: face_shape_set[0].nose[0].x is a string, not a finite number",
    ),
    "no pupil": (
        _seed_response(left_pupil=None),
        Failure.MALFORMED,
        "returned a malformed response: face_shape_set[0].left_pupil is missing",
    ),
    "profile far off the image": (
        _seed_response(face_profile=[{"x": p["x"] + 1000, "y": p["y"]} for p in SEED_FACE["face_profile"]]),
        Failure.MALFORMED,
        "returned a malformed response: face_shape_set[0] (bounds of face_profile and eyebrows) "
        "[296, 192, 1100, 115] lies outside the 690x920 image",
    ),
    "success false": (
        {"success": False, "error": {"code": "api_error", "message": "fetch failed"}, "trace_id": "t-1"},
        Failure.REJECTED,
        "answered success=false: api_error: fetch failed (trace_id t-1)",
    ),
}


@pytest.mark.parametrize(("body", "failure", "problem"), BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
def test_bad_answers_are_precise_errors(acedata, upstream, photo, body, failure, problem):
    image, url = photo
    fake = FakeUpstream(fixed(body))
    upstream.serve(ACEDATA_PATH, fake)

    with pytest.raises(UpstreamError) as raised:
        acedata.detect(image, max_side=1280, source_url=url)

    assert raised.value.failure is failure
    assert raised.value.detail == f"upstream acedata {problem}"
    assert len(fake.requests) == 1


def test_error_response_example_of_the_seed_is_understood(acedata, upstream, photo):
    image, url = photo
    upstream.serve(ACEDATA_PATH, lambda request: acedata_error(429, "too_many_requests", "rate limit exceeded"))

    with pytest.raises(UpstreamError) as raised:
        acedata.detect(image, max_side=1280, source_url=url)

    assert raised.value.failure is Failure.RATE_LIMITED
    assert "answered HTTP 429: too_many_requests: rate limit exceeded" in raised.value.detail
