"""Test helpers: frames made of real faces, detections of sampled video frames, and a whole video tracked.

Real faces in a fresh clone: astronaut heads (facequeue.cli.demo) and the cameraman of
scikit-image's camera.png. The astronaut and her mirror image embed as one person (as they
should); the cameraman is a second, different person.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from facequeue.cli.demo import astronaut_head, background
from facequeue.core.settings import get_settings
from workers.detectors.registry import get_detector
from workers.identity.persons import EmbedFn, FoundPerson
from workers.identity.tracking import FaceTracker, FrameDetections, FrameTracks
from workers.media.video import plan_sample_indices, probe_video, sample_frames
from workers.vision import Face, detect_faces

CAMERAMAN_HEAD_BOX = (170, 80, 110, 135)  # x, y, w, h of the head in camera.png, with margin


@dataclass(frozen=True)
class Head:
    who: str  # "astronaut" or "cameraman"
    x: int
    y: int
    height: int = 150
    mirrored: bool = False


@cache
def cameraman_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)


def cameraman_head(height: int) -> np.ndarray:
    x, y, w, h = CAMERAMAN_HEAD_BOX
    head = cameraman_bgr()[y : y + h, x : x + w]
    return cv2.resize(head, (round(w * height / h), height), interpolation=cv2.INTER_AREA)


def scene(heads: list[Head], width: int = 640, height: int = 360) -> np.ndarray:
    canvas = background(width, height)
    for place in heads:
        head = astronaut_head(place.height) if place.who == "astronaut" else cameraman_head(place.height)
        if place.mirrored:
            head = head[:, ::-1]
        h, w = head.shape[:2]
        canvas[place.y : place.y + h, place.x : place.x + w] = head
    return canvas


def detect(image_bgr: np.ndarray) -> list[Face]:
    """The service's detector at its default working size, faces left to right."""
    faces = detect_faces(get_detector(), image_bgr, get_settings().detector_max_side)
    return sorted(faces, key=lambda face: face.box[0])


def detections(images: list[np.ndarray], step: int = 1, fps: float = 25.0) -> list[FrameDetections]:
    """Each image as a sampled frame ``step`` frames after the previous one."""
    return [FrameDetections(i * step, i * step / fps, image, detect(image)) for i, image in enumerate(images)]


def sampled_detections(path: Path, count: int) -> Iterator[FrameDetections]:
    """``count`` evenly spaced frames of a video, the way the service samples them, one decoded at a time."""
    settings = get_settings()
    info = probe_video(path, settings)
    for frame in sample_frames(path, info, plan_sample_indices(info.frame_count, count), settings):
        yield FrameDetections(frame.index, frame.time_s, frame.image_bgr, detect(frame.image_bgr))


@dataclass(frozen=True)
class VideoTracking:
    frames: list[FrameTracks]
    persons: list[FoundPerson]
    person_of_track: dict[int, str]  # track id -> person_id; tracks that are no person are absent
    embeddings: int  # embed() calls
    detections: int


def track_frames(frames: Iterable[FrameDetections], embed: EmbedFn) -> VideoTracking:
    """Track a whole sampled video; ``frames`` may be a generator so that one image is held at a time."""
    tracker = FaceTracker(embed)
    tracked = [tracker.update(frame) for frame in frames]
    persons, person_of_track = tracker.persons()
    return VideoTracking(tracked, persons, person_of_track, tracker.embeddings, tracker.detections)
