"""(c) face_recognition (dlib's HOG detector, its default) against facequeue's detector on the same images.

Both get the same decoded images (face_recognition RGB, facequeue BGR) and are timed on detection alone,
each as a library runs in one process (dlib's HOG on one thread, OpenCV on its own threads). Recall is
one-to-one at IoU >= 0.5: the dlib photos' 43 faces, and the WIDER images' faces of the official hard list
(every valid face; detections matching an invalid face are neither hits nor misses).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import cv2
import matplotlib.pyplot as plt
import numpy as np
from PIL import ImageFile

from bench.data import DLIB_SETTING, BenchmarkSkipped, LabelledImage, labelled_images
from bench.matching import match_one_to_one
from bench.options import RunOptions
from bench.report import Section, Table, Target
from facequeue.core.settings import get_settings
from workers.detectors.registry import get_detector
from workers.media.image import decode_image
from workers.vision import detect_faces

TARGET_SPEEDUP = 5.0
HOG_UPSAMPLE = 1  # face_recognition's default
REPEATS = 3
QUICK_IMAGES = 2

Detect = Callable[[np.ndarray], np.ndarray]  # BGR image -> (n, 4) x, y, w, h


def run(options: RunOptions) -> Section:
    hog = peer_detector()
    images = labelled_images()
    if options.quick:
        images = images[:QUICK_IMAGES]
    decoded = [decode_image(image.path, get_settings()) for image in images]
    repeats = 1 if options.quick else REPEATS
    measured = {
        "facequeue (YuNet)": _measure(facequeue_detector(), decoded, repeats),
        f"face_recognition (dlib HOG, upsample {HOG_UPSAMPLE})": _measure(hog, decoded, repeats),
    }
    sets = {name: [image for image in images if (name == "WIDER") == image.is_wider] for name in ("dlib", "WIDER")}
    rows, recalls = [], {}
    for name, (rate, found) in measured.items():
        by_image = dict(zip(images, found, strict=True))
        recalls[name] = {label: _recall(subset, by_image) for label, subset in sets.items() if subset}
        recalls[name]["all"] = _recall(images, by_image)
        rows.append([name, rate, *(f"{hits}/{faces} = {hits / faces:.3f}" for hits, faces in recalls[name].values())])
    section = Section("peer", "(c) peer: face_recognition (dlib HOG)", options.command("peer"))
    section.tables.append(
        Table(["detector", "img/s", *(f"recall {label}" for label in recalls[name])], rows, f"{len(images)} images")
    )
    section.targets.append(_target(measured, recalls))
    section.figures["speed-recall"] = _plot(measured, recalls)
    return section


def peer_detector() -> Detect:
    truncated_images_loaded = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        import face_recognition
    except ImportError as error:
        raise BenchmarkSkipped(f"face_recognition is not importable ({error}); install the bench extra") from error
    finally:
        # Importing face_recognition makes Pillow accept truncated images for the whole process, which would
        # change what facequeue's decoder does beside it (in this benchmark and in the tests that run it).
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_images_loaded

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        found = face_recognition.face_locations(rgb, number_of_times_to_upsample=HOG_UPSAMPLE, model="hog")
        return np.array([(left, top, right - left, bottom - top) for top, right, bottom, left in found]).reshape(-1, 4)

    return detect


def facequeue_detector() -> Detect:
    detector, max_side = get_detector(), get_settings().detector_max_side

    def detect(image_bgr: np.ndarray) -> np.ndarray:
        return np.array([face.box for face in detect_faces(detector, image_bgr, max_side)]).reshape(-1, 4)

    return detect


def _measure(detect: Detect, images: list[np.ndarray], repeats: int) -> tuple[float, list[np.ndarray]]:
    """(images per second, detections per image); one warm-up image first."""
    detect(images[0])
    started = time.perf_counter()
    for _ in range(repeats):
        found = [detect(image) for image in images]
    return repeats * len(images) / (time.perf_counter() - started), found


def _recall(images: list[LabelledImage], found: dict[LabelledImage, np.ndarray]) -> tuple[int, int]:
    """(faces found, faces) over the counted faces of ``images``."""
    hits = faces = 0
    for image in images:
        counted = image.counted.get(DLIB_SETTING, image.counted.get("hard"))
        matched = match_one_to_one(found[image], image.boxes)
        hits += sum(1 for truth in matched if counted[truth])
        faces += int(counted.sum())
    return hits, faces


def _target(measured: dict, recalls: dict) -> Target:
    (ours, (our_rate, _)), (peer, (peer_rate, _)) = measured.items()
    our_hits, faces = recalls[ours]["all"]
    peer_hits, _ = recalls[peer]["all"]
    speedup = our_rate / peer_rate
    bounds = [
        f"recall on {label}: {recalls[ours][label][0]} vs {recalls[peer][label][0]} of {recalls[ours][label][1]}"
        for label in recalls[ours]
        if label != "all" and recalls[ours][label][0] < recalls[peer][label][0]
    ]
    if speedup < TARGET_SPEEDUP:
        bounds.insert(
            0,
            f"facequeue takes {1000 / our_rate:.0f} ms per image at max_side {get_settings().detector_max_side} "
            f"(these images are at most 1024 px, so full size) against dlib's {1000 / peer_rate:.0f} ms",
        )
    return Target(
        f"facequeue >= {TARGET_SPEEDUP:.0f}x face_recognition's img/s at equal or better recall",
        f"{speedup:.1f}x ({our_rate:.1f} vs {peer_rate:.2f} img/s), recall {our_hits}/{faces} vs {peer_hits}/{faces}",
        speedup >= TARGET_SPEEDUP and our_hits >= peer_hits,
        "; ".join(bounds),
    )


def _plot(measured: dict, recalls: dict):
    figure, (speed, recall) = plt.subplots(1, 2, figsize=(9, 3))
    names = list(measured)
    speed.barh(names, [rate for rate, _ in measured.values()], color=["tab:blue", "grey"])
    speed.set_xlabel("images per second")
    labels = list(recalls[names[0]])
    positions = np.arange(len(labels))
    for offset, name in enumerate(names):
        values = [hits / max(faces, 1) for hits, faces in recalls[name].values()]
        recall.bar(positions + 0.4 * offset, values, 0.4, label=name.split(" (")[0])
    recall.set_xticks(positions + 0.2, labels)
    recall.set_ylabel("recall at IoU 0.5")
    recall.set_ylim(0, 1)
    recall.legend(fontsize=7)
    figure.tight_layout()
    return figure
