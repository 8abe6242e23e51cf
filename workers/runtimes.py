"""The two model runtimes: ONNX Runtime for the ONNX models (YuNet, SFace) and LiteRT for the MediaPipe .tflite
ones (FaceMesh, Iris, BlazeFace). One runtime per model; the OpenCV reference runs only in `bench engine`.

ONNX Runtime (onnxruntime==1.31.1) against OpenCV's own wrappers, one thread each, on the same fp32 weights
(MODELS.md, 17 real photos, best of 3): YuNet 10.2 vs 24.4 ms/img at long side 640, 29.6 vs 82.8 ms at 1280, the
same faces. `bench engine` measures it again, with SFace per face. Threads per session and execution providers
come from the settings (FACEQUEUE_WORKER_THREADS, FACEQUEUE_EXECUTION_PROVIDERS).

LiteRT (ai-edge-litert==2.3.0) was chosen by measurement against OpenCV DNN (cv2.dnn.readNetFromTFLite with an
NCHW blob) on this 2-core machine: same crops, one thread each, median of 200 runs, 3 repeats:

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

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime

from facequeue.core.settings import Settings, get_settings
from workers.model_files import ModelFile, ModelFileError

# FACEQUEUE_EXECUTION_PROVIDERS names -> ONNX Runtime's, and what provides each.
EXECUTION_PROVIDERS = {
    "cpu": ("CPUExecutionProvider", "onnxruntime"),
    "cuda": ("CUDAExecutionProvider", "onnxruntime-gpu==1.31.1 (in place of onnxruntime) and CUDA 12 with cuDNN 9"),
    "tensorrt": ("TensorrtExecutionProvider", "onnxruntime-gpu==1.31.1 (in place of onnxruntime) and TensorRT 10"),
    "openvino": ("OpenVINOExecutionProvider", "onnxruntime-openvino (in place of onnxruntime)"),
}


class ExecutionProviderError(RuntimeError):
    pass


def intra_op_threads(settings: Settings) -> int:
    """FACEQUEUE_WORKER_THREADS, else this process's usable cores shared among the pool processes."""
    return settings.worker_threads or max(1, len(os.sched_getaffinity(0)) // settings.worker_concurrency)


def onnx_providers(names: Sequence[str]) -> list[str]:
    """ONNX Runtime's names for FACEQUEUE_EXECUTION_PROVIDERS, in order, CPU last as the fallback for what an
    accelerator cannot run; raises ExecutionProviderError naming what to install for one this runtime lacks."""
    available = onnxruntime.get_available_providers()
    providers = [EXECUTION_PROVIDERS[name][0] for name in (*names, "cpu")]
    for name in names:
        provider, install = EXECUTION_PROVIDERS[name]
        if provider not in available:
            raise ExecutionProviderError(
                f"FACEQUEUE_EXECUTION_PROVIDERS asks for {name}, but this ONNX Runtime ({onnxruntime.__version__}) "
                f"has only {', '.join(available)}: install {install}"
            )
    return list(dict.fromkeys(providers))


class OnnxModel:
    """One ONNX graph on an ONNX Runtime session; called with the input tensor, it returns the outputs by name.
    Threads and providers default to the settings'. A session may be called from several threads."""

    def __init__(self, path: Path, threads: int | None = None, providers: Sequence[str] | None = None) -> None:
        settings = get_settings()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or intra_op_threads(settings)
        options.inter_op_num_threads = 1  # these graphs are one chain of convolutions: nothing to run beside
        self._session = onnxruntime.InferenceSession(
            str(path), options, providers=onnx_providers(providers or settings.execution_providers)
        )
        self._input = self._session.get_inputs()[0].name
        self.output_names = [output.name for output in self._session.get_outputs()]

    def __call__(self, tensor_nchw: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self._session.run(None, {self._input: tensor_nchw}), strict=True))


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
