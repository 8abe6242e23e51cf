"""Several looks at one frame merged into one list of faces: a second detector's faces fused into the primary's
(`Fusion`, `FusedDetector`), and native-resolution tiles added to the downscaled frame (`detect_faces_tiled`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workers.vision import Face, FaceDetector, box_iou, detect_faces, detect_faces_in_frames, non_max_suppressed

TILE_NMS_IOU = 0.3  # YuNet's own NMS threshold: the same face seen by two tiles is one face
# A second detector's face is the primary's face when their boxes overlap this much. Measured on the 13 shared
# images, YuNet + BlazeFace: from 0.6 up the turned dlib head's two boxes no longer pair (dlib AP 1.000 -> 0.969);
# at 0.4 a neighbour was paired (WIDER hard AP 0.769 -> 0.766); 0.3 and 0.5 change nothing else.
FUSION_IOU = 0.5
# A tile's face this close to an inner tile edge (pixels + share of the face's size) is cut by it: a partial
# face's box stops a few pixels short of the edge (8 px for a 231 px half face). With 20% overlap (128 px of
# a 640 px tile) every face under 64 px is clear of the margins in one of the two tiles that share it;
# larger ones are the whole frame's.
TILE_EDGE_MARGIN = (2.0, 0.1)


@dataclass(frozen=True)
class Fusion:
    """A second detector whose faces are merged into the primary detector's faces (`merge`).

    Scores of two detectors are calibrated differently, so the second's are first mapped onto the primary's
    scale (`calibrate`). A face both find gets the score-weighted mean of the two boxes (weighted box fusion),
    the primary's landmarks and the higher of the two scores, so agreement never lowers a score. A face only
    the second detector finds is kept from `min_score` (on the primary's scale) on, unless it overlaps a kept
    face by TILE_NMS_IOU (the same face boxed differently, as NMS would see it).
    """

    detector: FaceDetector
    calibrate: Callable[[float], float]
    min_score: float
    max_side: int  # its working size: a 192 px model sees the frame downscaled once, straight to its input

    def merge(self, primary: list[Face], secondary: list[Face]) -> list[Face]:
        secondary = [Face(face.box, face.landmarks, self.calibrate(face.score)) for face in secondary]
        overlaps = box_iou(np.array([face.box for face in primary]), np.array([face.box for face in secondary]))
        fused, paired = [], set()
        for i in sorted(range(len(primary)), key=lambda i: -primary[i].score):
            face = primary[i]
            row = overlaps[i].copy()
            row[list(paired)] = 0.0
            j = int(row.argmax()) if row.size else -1
            if j < 0 or row[j] < FUSION_IOU:
                fused.append(face)
                continue
            paired.add(j)
            other = secondary[j]
            weights = np.array([face.score, other.score])
            box = weights @ np.array([face.box, other.box]) / max(weights.sum(), 1e-9)
            fused.append(Face(tuple(float(v) for v in box), face.landmarks, max(face.score, other.score)))
        for j, face in enumerate(secondary):
            if j in paired or face.score < self.min_score:
                continue
            if not fused or box_iou(np.array([face.box]), np.array([kept.box for kept in fused])).max() < TILE_NMS_IOU:
                fused.append(face)
        return fused


class FusedDetector:
    """The primary detector and a `Fusion`'s detector on the same working-size frame, merged."""

    def __init__(self, primary: FaceDetector, fusion: Fusion) -> None:
        self.primary = primary
        self.fusion = fusion
        self.name = f"{primary.name}+{fusion.detector.name}"
        self.model_version = f"{primary.model_version} + {fusion.detector.model_version}"

    def set_input_size(self, width: int, height: int) -> None:
        self.primary.set_input_size(width, height)
        self.fusion.detector.set_input_size(width, height)

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        return self.fusion.merge(self.primary.infer(image_bgr), self.fusion.detector.infer(image_bgr))


def detect_faces_tiled(
    detector: FaceDetector,
    image_bgr: np.ndarray,
    max_side: int,
    tile: int = 640,
    overlap: float = 0.2,
    fusion: Fusion | None = None,
    batch: int = 1,
) -> list[Face]:
    """Multi-scale: the whole frame at the working size, plus native-resolution tiles with overlap
    (small faces that the downscaled frame loses), merged by NMS in image coordinates. A tile's face that
    reaches one of its inner edges is a cut face and is left to the neighbouring tile or the whole frame.
    With a `fusion`, its detector also sees the whole frame and its faces are merged in (large faces; it
    adds nothing on tiles). The tiles, all one size, go through the model `batch` at a time."""
    faces = detect_faces(detector, image_bgr, max_side)
    height, width = image_bgr.shape[:2]
    if max(height, width) > tile:
        step = max(1, int(tile * (1 - overlap)))
        starts = [(x, y) for y in _tile_starts(height, tile, step) for x in _tile_starts(width, tile, step)]
        for first in range(0, len(starts), batch):
            chunk = starts[first : first + batch]
            crops = [image_bgr[y : y + tile, x : x + tile] for x, y in chunk]
            for (x, y), crop, found in zip(chunk, crops, detect_faces_in_frames(detector, crops, tile), strict=True):
                faces += [_shifted(face, x, y) for face in found if not _cut_by_tile(face, x, y, crop, width, height)]
    faces = _non_max_suppressed(faces)
    if fusion is not None:
        faces = fusion.merge(faces, detect_faces(fusion.detector, image_bgr, min(max_side, fusion.max_side)))
    return faces


def _cut_by_tile(face: Face, x: int, y: int, crop: np.ndarray, width: int, height: int) -> bool:
    """Whether `face` (in crop pixels) comes within TILE_EDGE_MARGIN of a crop edge that is not the image's.

    Without this a face larger than the overlap, split by two tiles, came back as up to 4 partial faces that
    outscored and outlived (NMS) the whole face found on the full frame (a 1200 px portrait: 4 faces).
    """
    fx, fy, fw, fh = face.box
    margin = TILE_EDGE_MARGIN[0] + TILE_EDGE_MARGIN[1] * max(fw, fh)
    crop_h, crop_w = crop.shape[:2]
    return (
        (x > 0 and fx < margin)
        or (y > 0 and fy < margin)
        or (x + crop_w < width and fx + fw > crop_w - margin)
        or (y + crop_h < height and fy + fh > crop_h - margin)
    )


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
    keep = non_max_suppressed(
        np.array([face.box for face in faces]), np.array([face.score for face in faces]), TILE_NMS_IOU
    )
    return [faces[i] for i in sorted(keep.tolist())]
