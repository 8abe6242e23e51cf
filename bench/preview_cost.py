"""What an annotated preview costs, for docs/api/previews.md: `python -m bench.preview_cost`.

A 1280x720 frame with 5 real faces (scikit-image's astronaut, five times, detected by YuNet as a task would):
- the worker keeping it (downscale if needed, JPEG-encode; the bytes it holds until the task succeeds);
- the API drawing preview.jpg from the kept frame (decode, annotate, encode), and contact.jpg of 10 such frames.
Time is the median of REPEATS runs; memory is tracemalloc's peak (NumPy and OpenCV's arrays are traced).
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

import cv2
import numpy as np

from api.services.preview_drawing import ContactSheet, FrameAnnotations, annotate, encode_jpeg
from facequeue.cli.demo import astronaut_bgr
from facequeue.core.settings import Settings
from workers.detectors.registry import get_detector
from workers.preview_frames import PreviewFrames
from workers.results import face_frame
from workers.vision import detect_faces

REPEATS = 20
FACES = 5
CONTACT_FRAMES = 10


class _Discard:
    def put_bytes(self, key: str, data: bytes, content_type: str = "") -> None:
        pass


def group_frame() -> np.ndarray:
    frame = np.full((720, 1280, 3), 90, np.uint8)
    face = cv2.resize(astronaut_bgr(), (256, 256), interpolation=cv2.INTER_AREA)
    for position in range(FACES):
        left = 0 if position == 0 else position * 256
        frame[232:488, left : left + 256] = face
    return frame


def measure(work: Callable[[], object]) -> tuple[float, float]:
    """(median milliseconds, peak MiB traced during one run)."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak


def main() -> None:
    frame = group_frame()
    faces = detect_faces(get_detector(), frame, 1280)
    marks = FrameAnnotations(face_frame(faces, 0.0), [face.score for face in faces], None, [None] * len(faces))
    kept = PreviewFrames("bench", _Discard(), Settings())
    keep_ms, keep_peak = measure(lambda: kept.keep("0", frame, frame.shape[1]))
    jpeg = kept._jpegs["0"]
    preview_ms, preview_peak = measure(
        lambda: encode_jpeg(annotate(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), marks, 1.0))
    )

    def sheet() -> bytes:  # as api/services/previews.py draws it: each frame decoded at 1/4, one at a time
        contact = ContactSheet(CONTACT_FRAMES, 720 / 1280)
        for _ in range(CONTACT_FRAMES):
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
            contact.add("#0  0.00 s  5 faces", image, marks, 1 / 4)
        return encode_jpeg(contact.image)

    sheet_ms, sheet_peak = measure(sheet)
    print(f"faces detected: {len(faces)}; kept frame: {len(jpeg) / 1024:.0f} KiB")
    print(f"worker, keep one 1280x720 frame: {keep_ms:.1f} ms, peak {keep_peak:.1f} MiB")
    print(f"API, preview.jpg from it: {preview_ms:.1f} ms, peak {preview_peak:.1f} MiB")
    print(f"API, contact.jpg of {CONTACT_FRAMES} such frames: {sheet_ms:.1f} ms, peak {sheet_peak:.1f} MiB")


if __name__ == "__main__":
    main()
