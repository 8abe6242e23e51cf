"""Face crops: the region expanded around a face box, clipped to the image, and points relative to it."""

from __future__ import annotations

import numpy as np

from facequeue.core.schemas import Region
from workers.vision import Face, jpeg_bytes

CROP_JPEG_QUALITY = 92


def expanded_region(face: Face, ratio: float, width: int, height: int) -> Region:
    """The box grown by `ratio` of its width (left/right) and height (top/bottom), clipped to the image."""
    x, y, w, h = face.box
    x1, y1 = max(0, round(x - ratio * w)), max(0, round(y - ratio * h))
    x2, y2 = min(width, round(x + w + ratio * w)), min(height, round(y + h + ratio * h))
    return [x1, y1, max(1, x2 - x1), max(1, y2 - y1)]


def crop_jpeg(image_bgr: np.ndarray, region: Region) -> bytes:
    x, y, w, h = region
    return jpeg_bytes(image_bgr[y : y + h, x : x + w], CROP_JPEG_QUALITY)


def relative_points(points: list[list[int]], region: Region) -> list[list[int]]:
    return [[px - region[0], py - region[1]] for px, py in points]
