"""Box overlap, one-to-one matching and the WIDER FACE evaluation (a port of the official one).

The WIDER port follows the official evaluation (MATLAB, and its Python port in Pytorch_Retinaface):
scores normalised over the whole set, per image each detection is matched to the ground-truth face it
overlaps most (IoU >= 0.5, pixel-inclusive boxes); a match to a face outside the setting's list (or
invalid) is ignored rather than counted wrong; precision and recall are summed over 1,000 score
thresholds and AP is the VOC area under the interpolated curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_MATCH = 0.5
WIDER_THRESHOLDS = 1000


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, pixel_inclusive: bool = False) -> np.ndarray:
    """IoU of every x, y, w, h box of ``boxes_a`` with every one of ``boxes_b``.

    ``pixel_inclusive`` counts a box's last pixel row and column, as the official WIDER code does.
    """
    extra = 1.0 if pixel_inclusive else 0.0
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    a1, a2 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b1, b2 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    sides = np.clip(np.minimum(a2, b2) - np.maximum(a1, b1) + extra, 0.0, None)
    inter = sides[..., 0] * sides[..., 1]
    area_a = (a[:, 2] + extra) * (a[:, 3] + extra)
    area_b = (b[:, 2] + extra) * (b[:, 3] + extra)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_one_to_one(found: np.ndarray, truth: np.ndarray, threshold: float = IOU_MATCH) -> dict[int, int]:
    """Greedy by highest IoU: truth index -> found index, each used at most once, IoU >= threshold."""
    overlaps = iou_matrix(truth, found)
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for t, f in zip(*np.unravel_index(np.argsort(-overlaps, axis=None), overlaps.shape), strict=True):
        if overlaps[t, f] < threshold:
            break
        if t not in pairs and f not in used:
            pairs[int(t)] = int(f)
            used.add(int(f))
    return pairs


@dataclass(frozen=True)
class ImageDetections:
    boxes: np.ndarray  # (n, 4) x, y, w, h
    scores: np.ndarray  # (n,)
    truth: np.ndarray  # (m, 4) x, y, w, h
    counted: np.ndarray  # (m,) bool: the faces of this setting; matches to the others are ignored


@dataclass(frozen=True)
class PRCurve:
    precision: np.ndarray
    recall: np.ndarray
    ap: float


def wider_evaluation(images: list[ImageDetections], iou_threshold: float = IOU_MATCH) -> PRCurve:
    all_scores = np.concatenate([image.scores for image in images]) if images else np.zeros(0)
    low, high = (all_scores.min(), all_scores.max()) if all_scores.size else (0.0, 1.0)
    totals = np.zeros((WIDER_THRESHOLDS, 2))  # proposals kept, faces recalled
    faces = 0
    for image in images:
        faces += int(image.counted.sum())
        if len(image.truth) and len(image.boxes):
            scores = (image.scores - low) / max(high - low, 1e-12)
            totals += _image_pr(image, scores, iou_threshold)
    proposals, recalled = totals[:, 0], totals[:, 1]
    precision = np.divide(recalled, proposals, out=np.zeros_like(recalled), where=proposals > 0)
    recall = recalled / max(faces, 1)
    return PRCurve(precision, recall, _voc_ap(recall, precision))


def _image_pr(image: ImageDetections, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    overlaps = iou_matrix(image.boxes[order], image.truth, pixel_inclusive=True)
    recalled = np.zeros(len(image.truth), dtype=int)  # 1 found, -1 matched but ignored
    kept = np.ones(len(scores), dtype=bool)
    recalled_so_far = np.zeros(len(scores))
    for h, row in enumerate(overlaps):
        best = int(row.argmax())
        if row[best] >= iou_threshold:
            if not image.counted[best]:
                recalled[best], kept[h] = -1, False
            elif recalled[best] == 0:
                recalled[best] = 1
        recalled_so_far[h] = np.count_nonzero(recalled == 1)
    thresholds = 1.0 - np.arange(1, WIDER_THRESHOLDS + 1) / WIDER_THRESHOLDS
    last = np.searchsorted(-scores, -thresholds, side="right") - 1  # last detection scoring >= threshold
    kept_so_far = np.cumsum(kept)
    info = np.zeros((WIDER_THRESHOLDS, 2))
    has = last >= 0
    info[has, 0] = kept_so_far[last[has]]
    info[has, 1] = recalled_so_far[last[has]]
    return info


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the precision envelope
    changes = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1]))
