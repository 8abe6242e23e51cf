"""Detect faces and give each the 90-point shape, with Tencent AnalyzeFace's `mode` and `need_rotate_detection`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workers.landmarks.facemesh import FaceMesh, Iris, Mesh
from workers.vision import Face, FaceDetector, detect_faces

ALL_FACES, LARGEST_FACE = 0, 1

# FaceMesh presence is bimodal, so the cut is not delicate (MediaPipe's own is 0.5). Measured with YuNet at
# score >= 0.2 on the 13 shared test images, both passes required: all 43 dlib faces pass (>= 0.997); of the
# labelled WIDER faces 72% of those of 30 px or more pass (the rest are blurred, occluded or in profile) but
# only 23% of those under 30 px; 5 of 283 unlabelled detections pass (a frontal dog face among them, 0.9997).
# Textured non-face patches score < 1e-4, but a round badge on the astronaut's suit scores 0.96: this filters
# detector false positives, it is not a face classifier.
PRESENCE_THRESHOLD = 0.5

# Tried in this order when need_rotate_detection is set and the upright image has no face.
ROTATIONS = (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_180, cv2.ROTATE_90_COUNTERCLOCKWISE)


@dataclass(frozen=True)
class AnalysedFace:
    """One analysed face in original image pixels; left/right are those of the upright face."""

    face: Face
    mesh: Mesh
    pupils: np.ndarray  # (2, 2): image-left, image-right


def analyze_face_shapes(
    image_bgr: np.ndarray,
    detector: FaceDetector,
    mesh: FaceMesh,
    iris: Iris,
    mode: int,
    need_rotate_detection: bool,
    max_side: int,
) -> list[AnalysedFace]:
    if mode not in (ALL_FACES, LARGEST_FACE):
        raise ValueError(f"mode must be {ALL_FACES} (all faces) or {LARGEST_FACE} (largest face), got {mode!r}")
    shapes = _upright_shapes(image_bgr, detector, mesh, iris, mode, max_side)
    if shapes or not need_rotate_detection:
        return shapes
    height, width = image_bgr.shape[:2]
    for rotation in ROTATIONS:
        shapes = _upright_shapes(cv2.rotate(image_bgr, rotation), detector, mesh, iris, mode, max_side)
        if shapes:
            return [_unrotated(shape, rotation, width, height) for shape in shapes]
    return []


def _upright_shapes(
    image_bgr: np.ndarray, detector: FaceDetector, mesh: FaceMesh, iris: Iris, mode: int, max_side: int
) -> list[AnalysedFace]:
    present = []
    for face in detect_faces(detector, image_bgr, max_side):
        first = mesh.infer(image_bgr, face)
        if first.presence < PRESENCE_THRESHOLD:
            continue
        # Both passes must see a face: an upside-down face passes the first (astronaut: 0.90) but not the
        # refined one (0.29), so need_rotate_detection goes on to the rotation that makes it upright.
        refined = mesh.refine(image_bgr, first)
        if refined.presence >= PRESENCE_THRESHOLD:
            present.append((face, refined))
    if mode == LARGEST_FACE and present:
        present = [max(present, key=lambda pair: pair[0].area)]
    return [AnalysedFace(face, refined, iris.infer(image_bgr, refined.points)) for face, refined in present]


def _unrotated(shape: AnalysedFace, rotation: int, width: int, height: int) -> AnalysedFace:
    """Map a shape found in the image rotated by `rotation` back to the original width x height image."""

    def points(xy: np.ndarray) -> np.ndarray:  # pixel centres: the last pixel is at size - 1
        return _rotate_back(xy, rotation, width - 1, height - 1)

    x, y, w, h = shape.face.box
    corners = _rotate_back(np.array([[x, y], [x + w, y + h]]), rotation, width, height)  # pixel edges
    (x1, y1), (x2, y2) = corners.min(axis=0), corners.max(axis=0)
    face = Face((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), points(shape.face.landmarks), shape.face.score)
    return AnalysedFace(face, Mesh(points(shape.mesh.points), shape.mesh.presence), points(shape.pupils))


def _rotate_back(xy: np.ndarray, rotation: int, x_extent: float, y_extent: float) -> np.ndarray:
    """Inverse of cv2.rotate for coordinates; extents are the original image's last x and y."""
    u, v = xy[:, 0], xy[:, 1]
    if rotation == cv2.ROTATE_90_CLOCKWISE:  # original (x, y) went to (y_extent - y, x)
        return np.stack([v, y_extent - u], axis=1)
    if rotation == cv2.ROTATE_180:
        return np.stack([x_extent - u, y_extent - v], axis=1)
    if rotation == cv2.ROTATE_90_COUNTERCLOCKWISE:  # original (x, y) went to (y, x_extent - x)
        return np.stack([x_extent - v, u], axis=1)
    raise ValueError(f"unknown cv2.rotate code {rotation!r}")
