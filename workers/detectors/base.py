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


TILE_NMS_IOU = 0.3  # YuNet's own NMS threshold: the same face seen by two tiles is one face


def detect_faces_tiled(
    detector: FaceDetector, image_bgr: np.ndarray, max_side: int, tile: int = 640, overlap: float = 0.2
) -> list[Face]:
    """Multi-scale: the whole frame at the working size, plus native-resolution tiles with overlap
    (small faces that the downscaled frame loses), merged by NMS in image coordinates."""
    faces = detect_faces(detector, image_bgr, max_side)
    height, width = image_bgr.shape[:2]
    if max(height, width) > tile:
        step = max(1, int(tile * (1 - overlap)))
        for y in _tile_starts(height, tile, step):
            for x in _tile_starts(width, tile, step):
                crop = image_bgr[y : y + tile, x : x + tile]
                faces += [_shifted(face, x, y) for face in detect_faces(detector, crop, tile)]
    return _non_max_suppressed(faces)


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, step))
    if starts[-1] + tile < length:
        starts.append(length - tile)  # the last tile ends at the edge
    return starts


def _shifted(face: Face, dx: int, dy: int) -> Face:
    x, y, w, h = face.box
    return Face((x + dx, y + dy, w, h), face.landmarks + np.array([dx, dy]), face.score)


def _non_max_suppressed(faces: list[Face]) -> list[Face]:
    if len(faces) < 2:
        return faces
    boxes = [[float(v) for v in face.box] for face in faces]
    keep = cv2.dnn.NMSBoxes(boxes, [face.score for face in faces], 0.0, TILE_NMS_IOU)
    return [faces[i] for i in sorted(np.asarray(keep).ravel().tolist())]


def _clip_to_image(face: Face, width: int, height: int) -> Face:
    x, y, w, h = face.box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(width), x + w), min(float(height), y + h)
    return Face((x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)), face.landmarks, face.score)


def largest_face(faces: list[Face]) -> list[Face]:
    return [max(faces, key=lambda face: face.area)] if faces else []
