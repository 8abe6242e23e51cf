"""YuNet (OpenCV zoo, 2023mar int8bq) through cv2.FaceDetectorYN."""

from __future__ import annotations

import cv2
import numpy as np

from workers.vision import YUNET_2023MAR_INT8BQ, Face


class YuNetDetector:
    name = "yunet"
    model_version = YUNET_2023MAR_INT8BQ.name

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000) -> None:
        self._input_size = (320, 320)
        self._model = cv2.FaceDetectorYN.create(
            str(YUNET_2023MAR_INT8BQ.path()), "", self._input_size, score_threshold, nms_threshold, top_k
        )

    def set_input_size(self, width: int, height: int) -> None:
        if self._input_size != (width, height):
            self._model.setInputSize((width, height))
            self._input_size = (width, height)

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        _, rows = self._model.detect(image_bgr)  # pre-processing and NMS happen inside FaceDetectorYN
        return self._postprocess(rows)

    @staticmethod
    def _postprocess(rows: np.ndarray | None) -> list[Face]:
        # a row: x, y, w, h, 5 landmark (x, y) pairs, score
        if rows is None:
            return []
        return [
            Face(
                box=(float(row[0]), float(row[1]), float(row[2]), float(row[3])),
                landmarks=row[4:14].reshape(5, 2).astype(np.float64),
                score=float(row[14]),
            )
            for row in rows
        ]
