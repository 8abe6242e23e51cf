"""Video frames through the detector several at once (FACEQUEUE_FRAME_BATCH), a part of `bench engine`.

A 100-frame video task's detector time per frame, batched against unbatched: the service's sampler takes 100 frames
of a shared 720p clip, and each model runs them as the worker's analyzer does (`detect_faces_in_frames`: the working
size, the batch axis, decoding and NMS), in batches of each size, with 1 thread and with every core. Best of the
passes, the batch sizes taking turns.
"""

from __future__ import annotations

import os
import time

import cv2

from bench.data import CLIPS_720P, VIDEOS
from bench.options import RunOptions
from bench.report import Table
from facequeue.core.settings import get_settings
from workers.detectors.centerface import CenterFaceDetector
from workers.detectors.yunet import YuNetDetector
from workers.media.video import plan_sample_indices, probe_video, sample_frames
from workers.vision import detect_faces_in_frames

BATCH_SIZES = (1, 4, 8, 16)
TASK_FRAMES = 100
QUICK_TASK_FRAMES = 16
MAX_SIDE = 640  # the service's default working size


def batch_table(options: RunOptions, repeats: int) -> tuple[Table, dict[str, int]]:
    """The table, and the fastest batch size per model with 1 thread."""
    settings = get_settings()
    clip = VIDEOS / CLIPS_720P[0]
    info = probe_video(clip, settings)
    count = QUICK_TASK_FRAMES if options.quick else TASK_FRAMES
    frames = [
        frame.image_bgr for frame in sample_frames(clip, info, plan_sample_indices(info.frame_count, count), settings)
    ]
    rows, fastest = [], {}
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        cv2.setNumThreads(threads)
        for model in (YuNetDetector(threads=threads), CenterFaceDetector(0.3, threads=threads)):
            per_frame = _best_ms_per_frame(model, frames, repeats)
            rows.append(
                [
                    model.name,
                    threads,
                    *(per_frame[size] for size in BATCH_SIZES),
                    per_frame[1] / min(per_frame.values()),
                ]
            )
            if threads == 1:
                fastest[model.name] = min(per_frame, key=per_frame.get)
    cv2.setNumThreads(1)
    table = Table(
        ["model", "threads", *(f"batch {size} ms/frame" for size in BATCH_SIZES), "unbatched / best"],
        rows,
        caption=f"a {len(frames)}-frame task of {CLIPS_720P[0]} (1280x720, detected at long side {MAX_SIDE}); "
        f"detector ms per frame, best of {repeats}",
    )
    return table, fastest


def _best_ms_per_frame(model, frames: list, repeats: int) -> dict[int, float]:
    best = dict.fromkeys(BATCH_SIZES, float("inf"))
    detect_faces_in_frames(model, frames[: max(BATCH_SIZES)], MAX_SIDE)  # warm-up: the session's first runs
    for _ in range(repeats):
        for size in BATCH_SIZES:
            started = time.perf_counter()
            for start in range(0, len(frames), size):
                detect_faces_in_frames(model, frames[start : start + size], MAX_SIDE)
            best[size] = min(best[size], (time.perf_counter() - started) * 1000 / len(frames))
    return best
