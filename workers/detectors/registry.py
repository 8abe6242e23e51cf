"""One loaded detector per worker process, keyed by name."""

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
