"""Media made from real face photos that ship inside scikit-image, for the demo and the tests.

A fresh clone has no test photos of its own; scikit-image's astronaut.png is a real face
(one person), so moving, scaled and mirrored copies of it give clips and group images whose
face count is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

ASTRONAUT_FACE_BOX = (150, 30, 150, 180)  # x, y, w, h of the head in astronaut.png, with margin


@cache
def astronaut_bgr() -> np.ndarray:
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - scikit-image is a declared dependency
        raise RuntimeError("the demo media needs scikit-image (pip install scikit-image)") from error
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def astronaut_head(height: int) -> np.ndarray:
    x, y, w, h = ASTRONAUT_FACE_BOX
    head = astronaut_bgr()[y : y + h, x : x + w]
    return cv2.resize(head, (round(w * height / h), height), interpolation=cv2.INTER_AREA)


def background(width: int, height: int) -> np.ndarray:
    ramp = np.linspace(60, 190, width, dtype=np.uint8)
    canvas = np.repeat(ramp[None, :, None], height, axis=0)
    return np.repeat(canvas, 3, axis=2).copy()


@dataclass(frozen=True)
class Placement:
    x: int
    y: int
    height: int
    mirrored: bool = False


def compose(width: int, height: int, placements: list[Placement]) -> np.ndarray:
    """A frame with one astronaut head per placement (mirrored copies read as different faces)."""
    canvas = background(width, height)
    for place in placements:
        head = astronaut_head(place.height)
        if place.mirrored:
            head = head[:, ::-1]
        h, w = head.shape[:2]
        canvas[place.y : place.y + h, place.x : place.x + w] = head
    return canvas


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "libx264") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def moving_face_frames(count: int = 75, width: int = 640, height: int = 360, faces: int = 1) -> list[np.ndarray]:
    """`faces` heads sliding left to right; frame i shows every head (count known per frame)."""
    head_height = 150
    frames = []
    for i in range(count):
        shift = round(i * (width - 160 * faces) / max(1, count - 1)) // faces
        placements = [
            Placement(x=shift + k * 160, y=100, height=head_height, mirrored=k % 2 == 1) for k in range(faces)
        ]
        frames.append(compose(width, height, placements))
    return frames


def write_demo_video(path: Path) -> Path:
    return write_video(path, moving_face_frames())
