"""Upstream face APIs as pytest-httpserver handlers, speaking seeds 000/001 (Akool) and 002 (AceData).

The Akool fake runs its own YuNet on the image it receives and answers in seed 000's shape; the AceData
fake fetches ``image_url`` like the real one and answers the seed's example face, or real 90-point shapes
from the repo's FaceMesh. Every fake records each request as it arrives (a slow handler's request is
counted before it answers), and can be told to fail its next calls first.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import httpx
import numpy as np
from werkzeug import Request, Response

from tests.contract_examples import AKOOL_DETECT_FACES
from tests.landmarks.seed_example import SEED_002_FACE_SHAPE
from workers.detectors.yunet import YuNetDetector
from workers.results import face_frame
from workers.vision import detect_faces

API_KEY = "upstream-test-key"
AKOOL_PATH = "/interface/detect-api/detect_faces"
ACEDATA_PATH = "/face/analyze"
SEED_002_IMAGE_SIZE = (690, 920)  # width, height of the image the seed's example face was found in

Handler = Callable[[Request], Response]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def akool_answer(frame: dict[str, Any]) -> dict[str, Any]:
    return {"error_code": 0, "error_msg": "SUCCESS", "faces_obj": {"0": frame}}


AKOOL_SEED_EXAMPLE = AKOOL_DETECT_FACES  # seed 000's first example, verbatim: one face in an image


def acedata_error(status: int, code: str, message: str) -> Response:
    """Seed 002's error shape."""
    body = {"success": False, "error": {"code": code, "message": message}, "trace_id": str(uuid.uuid4())}
    return json_response(body, status)


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: Any


@dataclass
class FakeUpstream:
    """Records requests; answers the queued `failures` first (one per request), then `answer`."""

    answer: Handler
    requests: list[Received] = field(default_factory=list)
    failures: list[Handler] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(Received(time.monotonic(), dict(request.headers), request.get_json(silent=True)))
            respond = self.failures.pop(0) if self.failures else self.answer
        return respond(request)

    def fail_next(self, *responses: Handler) -> None:
        with self._lock:
            self.failures.extend(responses)


def status(code: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: json_response({"error_code": 1, "error_msg": f"HTTP {code}"}, code, headers)


def stalled(until: threading.Event, then: Handler) -> Handler:
    """Answers only once `until` is set (or after 10 s), so a test can let its stalled requests finish."""

    def handler(request: Request) -> Response:
        until.wait(10)
        return then(request)

    return handler


def fixed(body: Any) -> Handler:
    """Always this body: JSON for data, as is for str (to send garbage)."""
    if isinstance(body, str):
        return lambda request: Response(body, content_type="text/html")
    return lambda request: json_response(body)


class AkoolDetect:
    """Seed 000/001's detect_faces: ``img`` (base64, data URI allowed) in, faces_obj["0"] out; x-api-key auth."""

    def __init__(self) -> None:
        self.detector = YuNetDetector()
        self.images: list[tuple[int, int]] = []  # (width, height) of each image received
        self._lock = threading.Lock()  # one cv2 model, possibly several server threads

    def __call__(self, request: Request) -> Response:
        if API_KEY not in (request.headers.get("x-api-key"), _bearer(request)):
            return json_response({"error_code": 1, "error_msg": "Invalid API key"}, 401)
        body = request.get_json(silent=True) or {}
        if not body.get("img") and not body.get("url"):
            return json_response({"error_code": 1, "error_msg": "Either ‘url’ or ‘img’ parameter must be provided"})
        if body.get("url"):
            return json_response({"error_code": 1, "error_msg": "Failed to download media from URL"})
        image = _decode_base64_image(body["img"])
        self.images.append((image.shape[1], image.shape[0]))
        with self._lock:
            faces = detect_faces(self.detector, image, max_side=1280)
        return json_response(akool_answer(face_frame(faces, None).model_dump(mode="json")))


class AceDataAnalyze:
    """Seed 002's face/analyze: fetches ``image_url`` and answers face_shape_set; Bearer auth."""

    def __init__(self, shapes: Callable[[np.ndarray], list[dict]]) -> None:
        self.shapes = shapes

    def __call__(self, request: Request) -> Response:
        if _bearer(request) != API_KEY:
            return acedata_error(401, "invalid_token", "invalid or missing authorization token")
        image_url = (request.get_json(silent=True) or {}).get("image_url")
        if not image_url:
            return acedata_error(400, "token_mismatched", "image_url is required")
        try:
            image = cv2.imdecode(np.frombuffer(httpx.get(image_url, timeout=5).content, np.uint8), cv2.IMREAD_COLOR)
        except httpx.HTTPError:
            image = None
        if image is None:
            return acedata_error(500, "api_error", "fetch failed")
        height, width = image.shape[:2]
        body = {"image_width": width, "image_height": height, "face_model_version": "3.0"}
        return json_response({**body, "face_shape_set": self.shapes(image)})


def seed_example_shapes(image: np.ndarray) -> list[dict]:
    """The seed's example face, whatever the image (serve a 690x920 one for it to make sense)."""
    return [{name: [{"x": x, "y": y} for x, y in points] for name, points in SEED_002_FACE_SHAPE.items()}]


class FaceMeshShapes:
    """Real 90-point shapes of every face, from the repo's YuNet + FaceMesh + Iris (as the compat API makes them)."""

    def __init__(self) -> None:
        from workers.landmarks.facemesh import FaceMesh, Iris

        self.detector, self.mesh, self.iris = YuNetDetector(), FaceMesh(), Iris()
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> list[dict]:
        from workers.landmarks.analyze import ALL_FACES, analyze_face_shapes
        from workers.landmarks.shape90 import face_shape

        with self._lock:
            found = analyze_face_shapes(image, self.detector, self.mesh, self.iris, ALL_FACES, False, 1280)
        return [face_shape(shape.mesh.points, shape.pupils) for shape in found]


def jpeg_bytes(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def _bearer(request: Request) -> str | None:
    value = request.headers.get("authorization", "")
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None


def _decode_base64_image(value: str) -> np.ndarray:
    data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value)
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
