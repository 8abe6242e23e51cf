"""The detector protocol and the pre/post-processing every detector shares.

A detector sees a frame already downscaled to its working size; `detect_faces` does the
downscale and maps boxes and points back to original pixels, so no detector repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Face:
    """One face in image pixels.

    landmarks: 5 points, image-left eye, image-right eye, nose tip, image-left mouth corner,
    image-right mouth corner (YuNet's order).
    """

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # shape (5, 2)
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Face:
        return Face(tuple(v * factor for v in self.box), self.landmarks * factor, self.score)


class FaceDetector(Protocol):
    name: str
    model_version: str

    def load(self) -> None: ...

    def set_input_size(self, width: int, height: int) -> None: ...

    def infer(self, image_bgr: np.ndarray) -> list[Face]: ...


def working_scale(width: int, height: int, max_side: int) -> float:
    """Scale factor to the working size: downscale only, never upscale."""
    return min(1.0, max_side / max(width, height))


def detect_faces(detector: FaceDetector, image_bgr: np.ndarray, max_side: int) -> list[Face]:
    height, width = image_bgr.shape[:2]
    scale = working_scale(width, height, max_side)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    detector.set_input_size(image_bgr.shape[1], image_bgr.shape[0])
    faces = detector.infer(image_bgr)
    if scale < 1.0:
        faces = [face.scaled(1.0 / scale) for face in faces]
    return [_clip_to_image(face, width, height) for face in faces]


def _clip_to_image(face: Face, width: int, height: int) -> Face:
    x, y, w, h = face.box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(width), x + w), min(float(height), y + h)
    return Face((x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)), face.landmarks, face.score)


def largest_face(faces: list[Face]) -> list[Face]:
    return [max(faces, key=lambda face: face.area)] if faces else []
