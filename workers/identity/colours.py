"""Coarse colour signatures: how tracking tells a cut between shots, and a new person standing where one stood."""

from __future__ import annotations

import cv2
import numpy as np

SIGNATURE_SIDE = 160


def colour_signature(image_bgr: np.ndarray) -> np.ndarray:
    """A coarse HSV colour histogram of a frame or a face: stable while a shot lasts, jumps at a cut."""
    height, width = image_bgr.shape[:2]
    scale = min(1.0, SIGNATURE_SIDE / max(width, height))  # fewer pixels, same histogram
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(histogram, None, 1.0, 0.0, cv2.NORM_L1)


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two colour signatures: 0 for the same colours, 1 for disjoint ones."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def box_pixels(image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The box's pixels, at least one (boxes are clipped to the image, but may be empty at its edge)."""
    height, width = image_bgr.shape[:2]
    x, y, w, h = (round(v) for v in box)
    x, y = min(max(0, x), width - 1), min(max(0, y), height - 1)
    return image_bgr[y : y + max(1, h), x : x + max(1, w)]
