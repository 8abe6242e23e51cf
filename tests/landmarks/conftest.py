"""Loaded landmark models shared by the landmark tests (one LiteRT interpreter each per test session)."""

from __future__ import annotations

import pytest

from facequeue.core.settings import get_settings
from workers.detectors.registry import get_detector
from workers.landmarks.analyze import ALL_FACES, AnalysedFace, analyze_face_shapes
from workers.landmarks.facemesh import FaceMesh, Iris
from workers.landmarks.shape90 import face_shape


class Analyzer:
    def __init__(self) -> None:
        self.detector = get_detector()
        self.mesh = FaceMesh()
        self.iris = Iris()
        self.max_side = get_settings().detector_max_side

    def faces(self, image_bgr, mode: int = ALL_FACES, need_rotate_detection: bool = False) -> list[dict]:
        shapes = self.shapes(image_bgr, mode, need_rotate_detection)
        return [face_shape(shape.mesh.points, shape.pupils) for shape in shapes]

    def shapes(self, image_bgr, mode: int = ALL_FACES, need_rotate_detection: bool = False) -> list[AnalysedFace]:
        return analyze_face_shapes(
            image_bgr, self.detector, self.mesh, self.iris, mode, need_rotate_detection, self.max_side
        )


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()
