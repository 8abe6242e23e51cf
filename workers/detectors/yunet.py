"""YuNet (OpenCV zoo, 2023mar int8bq) through cv2.FaceDetectorYN."""

from __future__ import annotations

import cv2
import numpy as np

from workers.detectors.base import Face
from workers.detectors.model_files import YUNET_2023MAR_INT8BQ


class YuNetDetector:
    name = "yunet"
    model_version = YUNET_2023MAR_INT8BQ.name

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._model: cv2.FaceDetectorYN | None = None
        self._input_size: tuple[int, int] | None = None

    def load(self) -> None:
        if self._model is None:
            self._model = cv2.FaceDetectorYN.create(
                str(YUNET_2023MAR_INT8BQ.path()), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
            self._input_size = (320, 320)

    def set_input_size(self, width: int, height: int) -> None:
        self.load()
        if self._input_size != (width, height):
            self._model.setInputSize((width, height))
            self._input_size = (width, height)

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        self.load()
        _, rows = self._model.detect(image_bgr)
        return [] if rows is None else [self._to_face(row) for row in rows]

    @staticmethod
    def _to_face(row: np.ndarray) -> Face:
        # row: x, y, w, h, 5 landmark (x, y) pairs, score
        return Face(
            box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
            landmarks=row[4:14].reshape(5, 2).astype(np.float64),
            score=float(row[14]),
        )
