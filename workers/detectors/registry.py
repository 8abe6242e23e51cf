"""The models a worker process loads once and reuses for every task."""

from __future__ import annotations

from functools import cache

from facequeue.settings import get_settings
from workers.detectors.base import FaceDetector
from workers.detectors.yunet import YuNetDetector


@cache
def get_detector(name: str = "yunet") -> FaceDetector:
    if name != "yunet":
        raise ValueError(f"unknown detector {name!r}")
    settings = get_settings()
    detector = YuNetDetector(
        score_threshold=settings.detector_score_threshold,
        nms_threshold=settings.detector_nms_threshold,
        top_k=settings.detector_top_k,
    )
    detector.load()
    return detector


@cache
def get_landmarkers():
    """FaceMesh and Iris for 90-point shapes; loaded on first use, since most tasks never need them."""
    from workers.landmarks.facemesh import FaceMesh, Iris

    mesh, iris = FaceMesh(), Iris()
    mesh.load()
    iris.load()
    return mesh, iris
