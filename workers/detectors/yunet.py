"""YuNet (OpenCV zoo, 2023mar) on ONNX Runtime: the fp32 graph folded from the shipped int8bq file
(`workers.model_files`), decoded here as cv2.FaceDetectorYN decodes it.

The frame is fed as it is (BGR, 0-255), zero-padded at the right and bottom to a multiple of 32. Each stride
(8, 16, 32) has one anchor per cell, in row-major order, and four heads: score = sqrt(cls x obj), box centre =
(cell + bbox[0:2]) x stride, box size = exp(bbox[2:4]) x stride, each point = (cell + kps) x stride. Then NMS.
On all 125 shared test images at long side 640 this gives FaceDetectorYN's 353 faces, boxes at IoU >= 0.99999,
scores within 5e-7 and points within 1e-4 px (tests/test_yunet_onnx.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workers.model_files import YUNET_2023MAR_FP32
from workers.runtimes import OnnxModel
from workers.vision import Face, batch_of, non_max_suppressed, padded_blob, padded_size

STRIDES = (8, 16, 32)
PAD_TO = 32  # the largest stride: every head's grid then covers the input exactly


class YuNetDetector:
    name = "yunet"
    model_version = YUNET_2023MAR_FP32.source.name  # the same weights as the shipped file, folded

    def __init__(
        self, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000, threads: int | None = None
    ) -> None:
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        self._model = OnnxModel(YUNET_2023MAR_FP32.path(), threads)
        self._input_size = (0, 0)
        self._padded_size = (0, 0)
        self._cells: dict[int, np.ndarray] = {}

    def set_input_size(self, width: int, height: int) -> None:
        """The padded input size and each stride's cell coordinates, kept while frames keep this size."""
        if self._input_size == (width, height):
            return
        self._input_size = (width, height)
        self._padded_size = padded_size(width, height, PAD_TO)
        self._cells = {}
        padded_width, padded_height = self._padded_size
        for stride in STRIDES:
            rows, cols = np.divmod(
                np.arange((padded_height // stride) * (padded_width // stride)), padded_width // stride
            )
            self._cells[stride] = np.stack([cols, rows], axis=1).astype(np.float32)

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        return self.infer_batch([image_bgr])[0]

    def infer_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Frames of the input size through the model at once, on its batch axis; the faces of each."""
        heads = self._model(batch_of([self._preprocess(image) for image in images]))
        # each head is reshaped in the graph to 1 x (frames x cells) x channels, frame after frame
        by_frame = {name: head.reshape(len(images), -1, head.shape[-1]) for name, head in heads.items()}
        return [
            self._postprocess({name: head[index : index + 1] for name, head in by_frame.items()})
            for index in range(len(images))
        ]

    def _preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        return padded_blob(image_bgr, self._padded_size)  # BGR, as FaceDetectorYN feeds it

    def _postprocess(self, heads: dict[str, np.ndarray]) -> list[Face]:
        boxes, points, scores = [], [], []
        for stride in STRIDES:
            cells = self._cells[stride]
            cls = np.clip(heads[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
            obj = np.clip(heads[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = score >= self.score_threshold  # decoding only the candidates: a handful of thousands
            bbox, kps, cells = heads[f"bbox_{stride}"][0][keep], heads[f"kps_{stride}"][0][keep], cells[keep]
            centre, size = (cells + bbox[:, :2]) * stride, np.exp(bbox[:, 2:4]) * stride
            boxes.append(np.hstack([centre - size / 2, size]))
            points.append((kps.reshape(-1, 5, 2) + cells[:, None, :]) * stride)
            scores.append(score[keep])
        box_array, point_array, score_array = np.concatenate(boxes), np.concatenate(points), np.concatenate(scores)
        kept = non_max_suppressed(box_array, score_array, self.nms_threshold, self.score_threshold, self.top_k)
        return [
            Face(
                box=tuple(float(v) for v in box_array[index]),
                landmarks=point_array[index].astype(np.float64),
                score=float(score_array[index]),
            )
            for index in kept
        ]
