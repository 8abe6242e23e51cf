"""The vision engine: each ONNX model on ONNX Runtime (what the service runs) against OpenCV's own wrapper of the
shipped file (the reference, kept only here), in ms per image or per face.

YuNet: the labelled photos (9 dlib party photos, 4 WIDER crowds) resized to long side 640 and 1280, timed on
`infer` alone (ONNX Runtime's includes padding, decoding and NMS, as FaceDetectorYN's does), with 1 thread and
with every core of this process. SFace: every face ONNX Runtime's YuNet finds in those photos at 640, timed on
alignment + embedding. Best of REPEATS interleaved passes. Then a video's frames in batches (bench/frame_batch.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import cv2
import matplotlib.pyplot as plt
import numpy as np

from bench.data import labelled_images, require_testdata
from bench.frame_batch import batch_table
from bench.options import RunOptions
from bench.report import Section, Table, Target
from facequeue.core.settings import get_settings
from workers.detectors.yunet import YuNetDetector
from workers.identity.embedder import SFaceEmbedder
from workers.model_files import SFACE_2021DEC_INT8BQ, YUNET_2023MAR_INT8BQ
from workers.vision import Face, detect_faces

LONG_SIDES = (640, 1280)
REPEATS = 3
QUICK_IMAGES = 2
TARGET_SPEEDUP = 2.2  # issue 17: YuNet on ONNX Runtime per thread, at 640 and at 1280


class OpenCVYuNet:
    """cv2.FaceDetectorYN on the shipped int8bq file, behind the detector protocol: the reference."""

    name = "yunet (OpenCV)"
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
        _, rows = self._model.detect(image_bgr)  # a row: x, y, w, h, 5 (x, y) points, score
        rows = np.zeros((0, 15), np.float32) if rows is None else rows
        return [
            Face(tuple(float(v) for v in row[:4]), row[4:14].reshape(5, 2).astype(np.float64), float(row[14]))
            for row in rows
        ]


class OpenCVSFace:
    """cv2.FaceRecognizerSF on the shipped int8bq file: alignCrop, then the raw 128-d feature."""

    def __init__(self) -> None:
        self._model = cv2.FaceRecognizerSF.create(str(SFACE_2021DEC_INT8BQ.path()), "")

    def aligned_crop(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        row = np.array([*face.box, *face.landmarks.ravel(), face.score], dtype=np.float32)[None, :]
        return self._model.alignCrop(image_bgr, row)

    def feature(self, image_bgr: np.ndarray, face: Face) -> np.ndarray:
        return self._model.feature(self.aligned_crop(image_bgr, face)).ravel()


def run(options: RunOptions) -> Section:
    require_testdata()
    photos = [cv2.imread(str(image.path)) for image in labelled_images()]
    if options.quick:
        photos = photos[:QUICK_IMAGES]
    repeats = 1 if options.quick else REPEATS
    thread_counts = sorted({1, len(os.sched_getaffinity(0))})
    rows, speedups = [], {}
    for side in LONG_SIDES:
        frames = [_at_long_side(photo, side) for photo in photos]
        for threads in thread_counts:
            cv2.setNumThreads(threads)
            opencv, onnx = OpenCVYuNet(), YuNetDetector(threads=threads)
            times = _best_ms(
                {"OpenCV": lambda f, d=opencv: _infer(d, f), "ONNX Runtime": lambda f, d=onnx: _infer(d, f)},
                frames,
                repeats,
            )
            faces = [sum(len(_infer(detector, frame)) for frame in frames) for detector in (opencv, onnx)]
            speedups[side, threads] = times["OpenCV"] / times["ONNX Runtime"]
            rows.append(
                [
                    "YuNet",
                    f"long side {side}",
                    threads,
                    times["OpenCV"],
                    times["ONNX Runtime"],
                    speedups[side, threads],
                    f"{faces[0]} vs {faces[1]}",
                ]
            )
    detector = YuNetDetector()
    crops = [(photo, face) for photo in photos for face in detect_faces(detector, photo, LONG_SIDES[0])]
    for threads in thread_counts:
        cv2.setNumThreads(threads)
        opencv_sface, onnx_sface = OpenCVSFace(), SFaceEmbedder(threads=threads)
        times = _best_ms(
            {
                "OpenCV": lambda item, m=opencv_sface: m.feature(*item),
                "ONNX Runtime": lambda item, m=onnx_sface: m.embed(*item),
            },
            crops,
            repeats,
        )
        rows.append(
            [
                "SFace",
                "per face (align + embed)",
                threads,
                times["OpenCV"],
                times["ONNX Runtime"],
                times["OpenCV"] / times["ONNX Runtime"],
                f"{len(crops)} faces",
            ]
        )
    cv2.setNumThreads(1)
    batches, fastest_batch = batch_table(options, repeats)
    table = Table(
        ["model", "input", "threads", "OpenCV ms", "ONNX Runtime ms", "speed-up", "faces (OpenCV vs ORT)"],
        rows,
        caption=f"{len(photos)} labelled photos; ms per image (YuNet) or per face (SFace), best of {repeats}",
    )
    targets = [
        Target(
            f"YuNet on ONNX Runtime >= {TARGET_SPEEDUP}x OpenCV with 1 thread at long side {side}",
            f"{speedups[side, 1]:.2f}x",
            speedups[side, 1] >= TARGET_SPEEDUP,
        )
        for side in LONG_SIDES
    ]
    targets += [
        Target(
            f"{model}: the batch size fastest on CPU (1 thread), which FACEQUEUE_FRAME_BATCH defaults to (1)",
            f"batch {size}",
            size == get_settings().frame_batch,
        )
        for model, size in fastest_batch.items()
    ]
    return Section(
        key="engine",
        title="vision engine: ONNX Runtime against OpenCV, per model",
        command=options.command("engine"),
        tables=[table, batches],
        targets=targets,
        notes=[
            "the same weights on both: OpenCV runs the shipped int8bq files (it folds their weights to fp32 on "
            "load), ONNX Runtime the fp32 graphs folded from them (workers/model_files.py)",
            "photos are resized to exactly the long side (up or down); the service only ever downscales",
            "frame batches: one session run per batch on the models' batch axis, the same faces as frame by frame "
            "(tests/test_frame_batch.py); on a GPU a batch of 8 to 16 is what we would start from and measure",
        ],
        figures={"ms": _plot(rows)},
    )


def _at_long_side(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=interpolation)


def _infer(detector: OpenCVYuNet | YuNetDetector, frame: np.ndarray) -> list[Face]:
    detector.set_input_size(frame.shape[1], frame.shape[0])
    return detector.infer(frame)


def _best_ms(runs: dict[str, Callable], items: list, repeats: int) -> dict[str, float]:
    """Best pass per run, in ms per item; the runs take turns each pass so that load on the machine hits both."""
    best = dict.fromkeys(runs, float("inf"))
    for call in runs.values():  # warm-up: first-call allocations, OpenCV's per-size network setup
        call(items[0])
    for _ in range(repeats):
        for name, call in runs.items():
            start = time.perf_counter()
            for item in items:
                call(item)
            best[name] = min(best[name], (time.perf_counter() - start) * 1000 / len(items))
    return best


def _plot(rows: list[list]) -> plt.Figure:
    figure, axis = plt.subplots(figsize=(8, 4))
    labels = [f"{row[0]} {row[1].replace('long side ', '')}\n{row[2]} thr" for row in rows]
    positions = np.arange(len(rows))
    axis.bar(positions - 0.2, [row[3] for row in rows], 0.4, label="OpenCV")
    axis.bar(positions + 0.2, [row[4] for row in rows], 0.4, label="ONNX Runtime")
    axis.set_xticks(positions, labels, fontsize=7)
    axis.set_ylabel("ms per image (YuNet) / per face (SFace)")
    axis.set_title("Same weights: OpenCV vs ONNX Runtime")
    axis.legend()
    return figure
