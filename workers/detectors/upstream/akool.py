"""Akool's detect_faces (seeds 000/001): the frame goes up as a base64 JPEG, faces come back in its pixels."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from workers.detectors.upstream.checks import UPSTREAM_SCORE, as_integer, as_list, as_numbers, checked_box, get_field
from workers.detectors.upstream.failures import Failure, ResponseProblem, malformed
from workers.detectors.upstream.guard import GuardedAdapter
from workers.vision import Face, detect_at_working_size, jpeg_bytes

JPEG_QUALITY = 90
# Akool's 6 points: left eye, right eye, nose, mouth centre, left and right mouth corner. Ours are the same
# without the mouth centre (which is derived from the corners anyway).
AKOOL_TO_FIVE = [0, 1, 2, 4, 5]


def parse_akool(body: Any, width: int, height: int) -> list[Face]:
    """faces_obj["0"] of a detect_faces response for one image of width x height."""
    code = as_integer(get_field(body, "error_code", ""), "error_code")
    if code != 0:
        raise ResponseProblem(
            Failure.REJECTED, f"answered error_code {code}: {body.get('error_msg') or 'no error_msg'}"
        )
    frame = get_field(get_field(body, "faces_obj", ""), "0", "faces_obj")
    regions = as_list(get_field(frame, "region", "faces_obj.0"), "faces_obj.0.region")
    landmarks = as_list(get_field(frame, "landmarks", "faces_obj.0"), "faces_obj.0.landmarks")
    if len(regions) != len(landmarks):
        raise malformed(f"faces_obj.0 has {len(regions)} regions but {len(landmarks)} landmark sets")
    return [
        Face(
            box=_akool_box(region, f"faces_obj.0.region[{index}]", width, height),
            landmarks=_akool_points(points, f"faces_obj.0.landmarks[{index}]")[AKOOL_TO_FIVE],
            score=UPSTREAM_SCORE,
        )
        for index, (region, points) in enumerate(zip(regions, landmarks, strict=True))
    ]


def _akool_box(region: Any, path: str, width: int, height: int) -> tuple[float, float, float, float]:
    x, y, w, h = as_numbers(region, 4, path)
    return checked_box((x, y, w, h), path, width, height)


def _akool_points(value: Any, path: str) -> np.ndarray:
    points = as_list(value, path)
    if len(points) != 6:
        raise malformed(f"{path} has {len(points)} points, expected 6")
    return np.array([as_numbers(point, 2, f"{path}[{index}]") for index, point in enumerate(points)])


class AkoolUpstream(GuardedAdapter):
    """POST {upstream_url}/interface/detect-api/detect_faces with the frame as base64 JPEG ``img``; auth x-api-key.

    The frame is downscaled to max_side before upload and the faces are mapped back, as for YuNet.
    """

    protocol = "akool"
    name = "upstream:akool"
    model_version = "akool detect_faces"
    path = "/interface/detect-api/detect_faces"

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]:
        # The source URL is not sent: the upstream sees the very pixels we decoded (uploads and video frames
        # have no URL anyway, and a URL our fetcher may reach need not be reachable from the upstream).
        return detect_at_working_size(self._detect_frame, image_bgr, max_side)

    def _detect_frame(self, image_bgr: np.ndarray) -> list[Face]:
        """One guarded call for the frame at its working size."""
        height, width = image_bgr.shape[:2]
        # single_face stays false: the pipeline picks the largest face itself, as it does for YuNet
        payload = {"img": base64.b64encode(jpeg_bytes(image_bgr, JPEG_QUALITY)).decode("ascii")}
        return self._caller.post(self.path, payload, lambda body: parse_akool(body, width, height))
