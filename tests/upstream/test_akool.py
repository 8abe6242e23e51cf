"""Akool detect_faces (seeds 000/001) against a real HTTP server that runs its own YuNet."""

from __future__ import annotations

import base64
import copy

import cv2
import numpy as np
import pytest

from tests.upstream.fake_upstreams import (
    AKOOL_PATH,
    AKOOL_SEED_EXAMPLE,
    API_KEY,
    AkoolDetect,
    FakeUpstream,
    fixed,
)
from tests.upstream.support import iou, local_faces, point_distances
from workers.detectors.upstream.checks import UPSTREAM_SCORE
from workers.detectors.upstream.failures import UPSTREAM_ERROR_CODE, Failure, UpstreamError


@pytest.fixture
def detect_api() -> AkoolDetect:
    return AkoolDetect()


@pytest.fixture
def akool_server(upstream, detect_api: AkoolDetect) -> FakeUpstream:
    fake = FakeUpstream(detect_api)
    upstream.serve(AKOOL_PATH, fake)
    return fake


def test_healthy_upstream_finds_the_astronaut_as_local_yunet_does(akool, akool_server, astronaut):
    faces = akool.detect(astronaut, max_side=1280)

    [expected] = local_faces(astronaut)
    [face] = faces
    assert iou(face.box, expected.box) > 0.9
    assert point_distances(face, expected).max() < 3.0  # JPEG and integer coordinates cost a pixel or two
    assert face.score == UPSTREAM_SCORE
    [request] = akool_server.requests
    assert request.headers["X-Api-Key"] == API_KEY
    assert "Authorization" not in request.headers
    assert set(request.body) == {"img"}
    sent = cv2.imdecode(np.frombuffer(base64.b64decode(request.body["img"]), np.uint8), cv2.IMREAD_COLOR)
    assert sent.shape == astronaut.shape


def test_frame_is_downscaled_before_upload_and_faces_mapped_back(akool, akool_server, detect_api, astronaut):
    [face] = akool.detect(astronaut, max_side=256)

    assert detect_api.images == [(256, 256)]
    [expected] = local_faces(astronaut)
    assert iou(face.box, expected.box) > 0.8
    assert point_distances(face, expected).max() < 8.0


def test_seed_example_maps_six_points_to_our_five(akool, upstream, astronaut):
    upstream.serve(AKOOL_PATH, fixed(AKOOL_SEED_EXAMPLE))

    [face] = akool.detect(astronaut, max_side=1280)

    assert face.box == (80.0, 50.0, 150.0, 180.0)
    # left eye, right eye, nose, then the mouth corners: the mouth centre (150, 165) is dropped
    assert face.landmarks.tolist() == [[120, 85], [180, 88], [150, 130], [125, 165], [175, 168]]


def test_no_face_is_an_empty_list(akool, akool_server):
    assert akool.detect(np.full((240, 320, 3), 128, np.uint8), max_side=1280) == []


def test_error_code_is_a_rejection_and_not_retried(akool, upstream, astronaut):
    fake = FakeUpstream(fixed({"error_code": 1, "error_msg": "Failed to download media from URL"}))
    upstream.serve(AKOOL_PATH, fake)

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.REJECTED
    assert raised.value.detail == "upstream akool answered error_code 1: Failed to download media from URL"
    assert raised.value.code == UPSTREAM_ERROR_CODE
    assert len(fake.requests) == 1


def _seed_with(**frame: object) -> dict:
    body = copy.deepcopy(AKOOL_SEED_EXAMPLE)
    body["faces_obj"]["0"].update(frame)
    return body


MALFORMED = {
    "html": ("<html><body>502 Bad Gateway</body></html>", "the body is not JSON ('<html><body>502 Bad Gateway"),
    "a list": ([], "the body is a list, not an object"),
    "error_code as text": ({"error_code": "0", "faces_obj": {}}, "error_code is a string, not an integer"),
    "no faces_obj": ({"error_code": 0, "error_msg": "SUCCESS"}, "faces_obj is missing"),
    "no frame 0": ({"error_code": 0, "faces_obj": {"1": {}}}, "faces_obj.0 is missing"),
    "region not a list": (_seed_with(region="80,50,150,180"), "faces_obj.0.region is a string, not a list"),
    "3-number region": (_seed_with(region=[[80, 50, 150]]), "faces_obj.0.region[0] has 3 numbers, expected 4"),
    "text in region": (
        _seed_with(region=[[80, "50", 150, 180]]),
        "faces_obj.0.region[0][1] is a string, not a finite number",
    ),
    "NaN in region": (_seed_with(region=[[80, float("nan"), 150, 180]]), "faces_obj.0.region[0][1] is nan"),
    "5 landmarks": (
        _seed_with(landmarks=[[[120, 85], [180, 88], [150, 130], [150, 165], [125, 165]]]),
        "faces_obj.0.landmarks[0] has 5 points, expected 6",
    ),
    "unpaired regions": (
        _seed_with(region=[[80, 50, 150, 180], [10, 10, 20, 20]]),
        "faces_obj.0 has 2 regions but 1 landmark sets",
    ),
    "box right of the image": (
        _seed_with(region=[[600, 50, 150, 180]]),
        "faces_obj.0.region[0] [600, 50, 150, 180] lies outside the 512x512 image",
    ),
    "box far larger than the image": (
        _seed_with(region=[[0, 0, 5000, 5000]]),
        "faces_obj.0.region[0] [0, 0, 5000, 5000] lies outside the 512x512 image",
    ),
    "negative width": (
        _seed_with(region=[[80, 50, -150, 180]]),
        "faces_obj.0.region[0] has a non-positive size -150x180",
    ),
}


@pytest.mark.parametrize(("body", "problem"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_response_is_a_precise_error_and_not_retried(akool, upstream, astronaut, body, problem):
    fake = FakeUpstream(fixed(body))
    upstream.serve(AKOOL_PATH, fake)

    with pytest.raises(UpstreamError) as raised:
        akool.detect(astronaut, max_side=1280)

    assert raised.value.failure is Failure.MALFORMED
    assert raised.value.detail.startswith(f"upstream akool returned a malformed response: {problem}")
    assert len(fake.requests) == 1
