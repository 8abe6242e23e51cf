"""The detectors a worker process loads once and reuses for every task."""

from __future__ import annotations

import copy
import dataclasses
from functools import cache

from facequeue.core.settings import get_settings
from workers.detectors.fusion import FusedDetector, Fusion
from workers.detectors.yunet import YuNetDetector
from workers.vision import FaceDetector

# BlazeFace faces from this raw score on are paired with YuNet's for box fusion (0.3 on YuNet's scale: far
# below the service threshold, so only pairing sees them; a face only BlazeFace finds needs the threshold).
BLAZEFACE_PAIRING_SCORE = 0.25
FUSED_DETECTOR = "yunet+blazeface"
# The local detector each value of the `detector` option runs (None: the service's YuNet, fused or not).
LOCAL_DETECTORS = {"local": None, "accurate": "centerface"}


@cache
def get_detector(name: str | None = None) -> FaceDetector:
    """One loaded detector per process: "yunet", "centerface", "blazeface" (BlazeFace full range, raw scores from
    BLAZEFACE_PAIRING_SCORE on) or "yunet+blazeface" (the two fused on every frame, see `get_fusion`).
    None: the service's local detector, YuNet, or the fused pair with FACEQUEUE_DETECTOR_FUSION."""
    if name is None:
        return get_detector(FUSED_DETECTOR if get_settings().detector_fusion else "yunet")
    settings = get_settings()
    if name == "yunet":
        return YuNetDetector(
            score_threshold=settings.detector_score_threshold,
            nms_threshold=settings.detector_nms_threshold,
            top_k=settings.detector_top_k,
        )
    if name == "centerface":
        from workers.detectors.centerface import CenterFaceDetector

        return CenterFaceDetector(score_threshold=settings.detector_accurate_score_threshold)
    if name == "blazeface":
        from workers.detectors.blazeface import BlazeFaceFullRange

        return BlazeFaceFullRange(
            score_threshold=BLAZEFACE_PAIRING_SCORE, nms_threshold=settings.detector_nms_threshold
        )
    if name == FUSED_DETECTOR:
        return FusedDetector(get_detector("yunet"), get_fusion())
    raise ValueError(f"unknown detector {name!r}")


def with_min_score(detector: FaceDetector, min_score: float) -> FaceDetector:
    """`detector` keeping faces from `min_score` on (a task's own threshold) instead of its calibrated one; the
    copy shares the loaded model. Fused: the primary's threshold, and the one a face only the second finds needs."""
    adjusted = copy.copy(detector)
    if isinstance(detector, FusedDetector):
        adjusted.primary = with_min_score(detector.primary, min_score)
        adjusted.fusion = dataclasses.replace(detector.fusion, min_score=min_score)
    else:
        adjusted.score_threshold = min_score
    return adjusted


@cache
def get_fusion() -> Fusion:
    """BlazeFace full range merged into YuNet's faces: what tiling mode adds on the whole frame."""
    from workers.detectors.blazeface import INPUT_SIZE, on_yunet_scale

    return Fusion(get_detector("blazeface"), on_yunet_scale, get_settings().detector_score_threshold, INPUT_SIZE)
