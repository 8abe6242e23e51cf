"""AceData's face/analyze (seed 002): the upstream fetches the frame's URL itself and answers 90-point shapes."""

from __future__ import annotations

from typing import Any

import numpy as np

from facequeue.core.schemas import SHAPE_GROUP_SIZES
from workers.detectors.upstream.checks import (
    UPSTREAM_SCORE,
    as_integer,
    as_list,
    as_number,
    checked_box,
    get_field,
)
from workers.detectors.upstream.failures import Failure, ResponseProblem, UpstreamError, malformed
from workers.detectors.upstream.guard import GuardedAdapter, body_error
from workers.vision import Face

# Group indices, read off the seed example (tests/landmarks/seed_example.py): nose[0] (311, 242) lies inside
# the loop nose[1..12] draws around the nose, so it is the tip; mouth[0] (296, 262) and mouth[6] (335, 277)
# are the outer contour's image-left- and image-right-most points, the corners. "left" is the image's left:
# left_pupil (310, 211) has the smaller x, as our "image-left eye" does.
ACEDATA_NOSE_TIP = 0
ACEDATA_MOUTH_CORNERS = (0, 6)
ACEDATA_OUTLINE_GROUPS = ("face_profile", "left_eye_brow", "right_eye_brow")


def parse_acedata(body: Any, width: int, height: int) -> list[Face]:
    """face_shape_set of a face/analyze response for the task's image of width x height."""
    if isinstance(body, dict) and body.get("success") is False:
        raise ResponseProblem(Failure.REJECTED, f"answered success=false{body_error(body)}")
    size = (
        as_integer(get_field(body, "image_width", ""), "image_width"),
        as_integer(get_field(body, "image_height", ""), "image_height"),
    )
    if size != (width, height):
        # It analysed other pixels than we decoded (changed URL content, EXIF rotation): not an outage.
        raise ResponseProblem(
            Failure.REJECTED, f"analysed a {size[0]}x{size[1]} image, but the task's image is {width}x{height}"
        )
    shapes = as_list(get_field(body, "face_shape_set", ""), "face_shape_set")
    return [_acedata_face(shape, f"face_shape_set[{index}]", width, height) for index, shape in enumerate(shapes)]


def _acedata_face(shape: Any, path: str, width: int, height: int) -> Face:
    groups = {
        name: _acedata_points(get_field(shape, name, path), size, f"{path}.{name}")
        for name, size in SHAPE_GROUP_SIZES.items()
    }
    # The box spans temples, chin (face_profile) and brows: the face without forehead, tighter than YuNet's.
    outline = np.vstack([groups[name] for name in ACEDATA_OUTLINE_GROUPS])
    (x1, y1), (x2, y2) = outline.min(axis=0), outline.max(axis=0)
    checked_box((x1, y1, x2 - x1, y2 - y1), f"{path} (bounds of face_profile and eyebrows)", width, height)
    (x1, y1), (x2, y2) = np.clip([(x1, y1), (x2, y2)], 0, (width, height))
    landmarks = np.vstack(
        [
            groups["left_pupil"][0],
            groups["right_pupil"][0],
            groups["nose"][ACEDATA_NOSE_TIP],
            groups["mouth"][ACEDATA_MOUTH_CORNERS[0]],
            groups["mouth"][ACEDATA_MOUTH_CORNERS[1]],
        ]
    )
    return Face((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), landmarks, UPSTREAM_SCORE)


def _acedata_points(value: Any, count: int, path: str) -> np.ndarray:
    points = as_list(value, path)
    if len(points) != count:
        raise malformed(f"{path} has {len(points)} points, expected {count}")
    return np.array(
        [
            [as_number(get_field(point, axis, f"{path}[{index}]"), f"{path}[{index}].{axis}") for axis in ("x", "y")]
            for index, point in enumerate(points)
        ]
    )


class AceDataUpstream(GuardedAdapter):
    """POST {upstream_url}/face/analyze with ``image_url``; auth Bearer.

    The upstream fetches and analyses the original image itself, so it serves only frames that have a URL
    (image tasks by URL or frame_urls), and max_side does not apply.
    """

    protocol = "acedata"
    name = "upstream:acedata"
    model_version = "acedata face/analyze"
    path = "/face/analyze"

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]:
        if not source_url:
            raise UpstreamError(
                self.protocol,
                Failure.CANNOT_SERVE,
                "cannot serve this frame: face/analyze takes only image_url, and the frame has none "
                "(an uploaded image or a video frame)",
            )
        height, width = image_bgr.shape[:2]
        payload = {"image_url": source_url}
        return self._caller.post(self.path, payload, lambda body: parse_acedata(body, width, height))
