"""Comparing upstream faces with what local YuNet finds in the same image."""

from __future__ import annotations

import numpy as np

from workers.detectors.registry import get_detector
from workers.vision import Face, detect_faces


def local_faces(image_bgr: np.ndarray, max_side: int = 1280) -> list[Face]:
    return detect_faces(get_detector(), image_bgr, max_side)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def point_distances(a: Face, b: Face) -> np.ndarray:
    return np.linalg.norm(a.landmarks - b.landmarks, axis=1)
