"""Detector faces -> seed 000's per-frame shape."""

from __future__ import annotations

from facequeue.core.schemas import FaceFrame
from workers.vision import Face, six_points


def seed_landmarks(face: Face) -> list[list[int]]:
    """The seed's 6 points of a face (`six_points`), in whole pixels."""
    return [[int(round(x)), int(round(y))] for x, y in six_points(face.landmarks)]


def landmarks_str(points: list[list[int]]) -> str:
    return ":".join(f"{x},{y}" for x, y in points[:4])


def region(face: Face) -> list[int]:
    return [int(round(v)) for v in face.box]


def face_frame(faces: list[Face], frame_time: float | None) -> FaceFrame:
    landmarks = [seed_landmarks(face) for face in faces]
    return FaceFrame(
        landmarks=landmarks,
        landmarks_str=[landmarks_str(points) for points in landmarks],
        region=[region(face) for face in faces],
        removed=[],
        frame_time=frame_time,
    )
