"""Detector faces -> seed 000's per-frame shape."""

from __future__ import annotations

import numpy as np

from facequeue.schemas import FaceFrame
from workers.detectors.base import Face


def six_points(face: Face) -> list[list[int]]:
    """Seed order: left eye, right eye, nose, mouth centre, left mouth corner, right mouth corner."""
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    mouth_centre = (mouth_left + mouth_right) / 2.0
    points = np.stack([left_eye, right_eye, nose, mouth_centre, mouth_left, mouth_right])
    return [[int(round(x)), int(round(y))] for x, y in points]


def landmarks_str(points: list[list[int]]) -> str:
    return ":".join(f"{x},{y}" for x, y in points[:4])


def region(face: Face) -> list[int]:
    return [int(round(v)) for v in face.box]


def face_frame(faces: list[Face], frame_time: float | None) -> FaceFrame:
    landmarks = [six_points(face) for face in faces]
    return FaceFrame(
        landmarks=landmarks,
        landmarks_str=[landmarks_str(points) for points in landmarks],
        region=[region(face) for face in faces],
        removed=[],
        frame_time=frame_time,
    )
