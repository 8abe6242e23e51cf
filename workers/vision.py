"""Vision primitives that detectors, landmarks and identity share: a face, box overlap, the seed's points,
JPEG encoding and the detector protocol. Those packages import this module (and `workers.model_files`,
`workers.runtimes`), never each other.

A detector sees a frame already downscaled to its working size; `detect_faces` does the downscale and maps
boxes and points back to original pixels, so no detector repeats it. The protocol lives here, not with the
detectors, so that landmarks can run any detector without importing them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@dataclass(frozen=True)
class Face:
    """One face in image pixels.

    landmarks: 5 points, image-left eye, image-right eye, nose tip, image-left mouth corner,
    image-right mouth corner (YuNet's order).
    """

    box: tuple[float, float, float, float]  # x, y, w, h
    landmarks: np.ndarray  # shape (5, 2)
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    def scaled(self, factor: float) -> Face:
        return Face(tuple(v * factor for v in self.box), self.landmarks * factor, self.score)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every x, y, w, h box of `boxes_a` with every one of `boxes_b`: shape (len(a), len(b))."""
    a, b = boxes_a.reshape(-1, 4), boxes_b.reshape(-1, 4)
    corner1 = np.maximum(a[:, None, :2], b[None, :, :2])
    corner2 = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(corner2 - corner1, 0.0, None), axis=2)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def non_max_suppressed(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, score_threshold: float = 0.0, top_k: int = 0
) -> np.ndarray:
    """Indices of the x, y, w, h `boxes` that greedy NMS keeps, highest score first: each box drops those it
    overlaps by more than `iou_threshold`. Only scores above `score_threshold` take part; `top_k`: at most that
    many candidates (0: all)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    kept = cv2.dnn.NMSBoxes(
        np.asarray(boxes, np.float64).tolist(),
        np.asarray(scores, np.float64).tolist(),
        score_threshold,
        iou_threshold,
        top_k=top_k,
    )
    return np.asarray(kept, dtype=int).ravel()


def padded_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """(width, height) rounded up to a multiple of `multiple`: what a fully convolutional detector needs so that
    every stride's grid covers its input exactly."""
    return -(-width // multiple) * multiple, -(-height // multiple) * multiple


def padded_blob(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The H x W x 3 image as a 1 x 3 x `size` float32 blob (size: width, height), channels and values as they
    are, zero-padded at the right and bottom only, so that a detection's pixels are the image's."""
    height, width = image.shape[:2]
    blob = np.zeros((1, 3, size[1], size[0]), np.float32)
    blob[0, :, :height, :width] = image.transpose(2, 0, 1)
    return blob


def batch_of(blobs: list[np.ndarray]) -> np.ndarray:
    """One N x 3 x H x W input from N blobs of 1 x 3 x H x W (a lone blob as it is, not copied)."""
    return blobs[0] if len(blobs) == 1 else np.concatenate(blobs)


def six_points(landmarks: np.ndarray) -> np.ndarray:
    """The seed's 6 points from a face's 5 (`Face.landmarks` order): left eye, right eye, nose, mouth centre,
    left mouth corner, right mouth corner; the mouth centre is the corners' midpoint."""
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
    mouth_centre = (mouth_left + mouth_right) / 2.0
    return np.stack([left_eye, right_eye, nose, mouth_centre, mouth_left, mouth_right])


def jpeg_bytes(image_bgr: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        height, width = image_bgr.shape[:2]
        raise ValueError(f"could not encode a {width}x{height} image as JPEG")
    return encoded.tobytes()


# --- running a detector ------------------------------------------------------------------------------------


class FaceDetector(Protocol):
    """A local model, opencv_zoo style: the constructor loads it, then `set_input_size` and `infer` per frame."""

    name: str
    model_version: str

    def set_input_size(self, width: int, height: int) -> None: ...

    def infer(self, image_bgr: np.ndarray) -> list[Face]: ...


@runtime_checkable
class BatchedDetector(FaceDetector, Protocol):
    """A detector whose graph has a batch axis: frames of the input size go through the model at once."""

    def infer_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]: ...


def working_scale(width: int, height: int, max_side: int) -> float:
    """Scale factor to the working size: downscale only, never upscale."""
    return min(1.0, max_side / max(width, height))


def detect_faces(detector: FaceDetector, image_bgr: np.ndarray, max_side: int) -> list[Face]:
    def infer(frame: np.ndarray) -> list[Face]:
        detector.set_input_size(frame.shape[1], frame.shape[0])
        return detector.infer(frame)

    return detect_at_working_size(infer, image_bgr, max_side)


def detect_faces_in_frames(detector: FaceDetector, images: Sequence[np.ndarray], max_side: int) -> list[list[Face]]:
    """`detect_faces` on each of a video's frames, all through the model at once when it has a batch axis and
    the frames one size."""
    if len(images) == 1 or not isinstance(detector, BatchedDetector) or len({i.shape for i in images}) > 1:
        return [detect_faces(detector, image, max_side) for image in images]
    height, width = images[0].shape[:2]
    scale = working_scale(width, height, max_side)
    working = [_at_scale(image, scale) for image in images]
    detector.set_input_size(working[0].shape[1], working[0].shape[0])
    return [_in_frame(faces, scale, width, height) for faces in detector.infer_batch(working)]


def detect_at_working_size(
    infer: Callable[[np.ndarray], list[Face]], image_bgr: np.ndarray, max_side: int
) -> list[Face]:
    """`infer` on the frame downscaled to `max_side`, its faces mapped back to and clipped to the frame."""
    height, width = image_bgr.shape[:2]
    scale = working_scale(width, height, max_side)
    return _in_frame(infer(_at_scale(image_bgr, scale)), scale, width, height)


def _at_scale(image_bgr: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image_bgr
    height, width = image_bgr.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)


def _in_frame(faces: list[Face], scale: float, width: int, height: int) -> list[Face]:
    if scale < 1.0:
        faces = [face.scaled(1.0 / scale) for face in faces]
    return [_clip_to_image(face, width, height) for face in faces]


def in_file_pixels(faces: list[Face], scale: int, width: int, height: int) -> list[Face]:
    """Faces found in an image decoded at 1/`scale` of its size (a reduced JPEG), in the pixels of the file's
    `width` x `height`, clipped to it (the decoded image's last row and column may reach past the file's)."""
    return [_clip_to_image(face.scaled(scale), width, height) for face in faces]


def _clip_to_image(face: Face, width: int, height: int) -> Face:
    x, y, w, h = face.box
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(width), x + w), min(float(height), y + h)
    return Face((x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)), face.landmarks, face.score)


def largest_face(faces: list[Face]) -> list[Face]:
    """The one largest face, as a list (empty without faces)."""
    return [max(faces, key=lambda face: face.area)] if faces else []
