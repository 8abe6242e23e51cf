"""The vision engine: fp32 graphs derived from the shipped files, ONNX Runtime's threads and providers, and YuNet on
ONNX Runtime finding the very faces OpenCV's FaceDetectorYN finds (the reference, kept in bench/engine.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
from pydantic import ValidationError

from bench.engine import OpenCVYuNet
from facequeue.core.settings import Settings
from tests.conftest import SHARED_TESTDATA
from workers.detectors.registry import get_detector
from workers.model_files import SFACE_2021DEC_FP32, YUNET_2023MAR_FP32, ModelFileError, derive_into
from workers.runtimes import ExecutionProviderError, intra_op_threads, onnx_providers
from workers.vision import box_iou, detect_faces

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("model", [YUNET_2023MAR_FP32, SFACE_2021DEC_FP32], ids=lambda model: model.name)
def test_the_fp32_graph_is_derived_to_its_recorded_hash_and_a_damaged_copy_is_replaced(tmp_path, model) -> None:
    damaged = tmp_path / f"{model.name}.onnx"
    damaged.write_bytes(b"not a model")
    path = derive_into(tmp_path, model)
    assert path == damaged
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    assert [p.name for p in tmp_path.iterdir()] == [damaged.name]  # no partial file left behind


def test_a_derived_graph_that_differs_from_the_recorded_hash_is_refused(tmp_path) -> None:
    expected_other = dataclasses.replace(YUNET_2023MAR_FP32, sha256="0" * 64)
    with pytest.raises(ModelFileError, match=f"derived from {YUNET_2023MAR_FP32.source.name} has sha256 7faf5759"):
        derive_into(tmp_path, expected_other)
    assert list(tmp_path.iterdir()) == []


def test_the_derived_yunet_takes_any_frame_size_and_batch_with_plain_fp32_weights() -> None:
    session = onnxruntime.InferenceSession(str(YUNET_2023MAR_FP32.path()), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    outputs = session.run(["cls_8", "kps_32"], {"input": np.zeros((2, 3, 96, 160), np.float32)})
    # the graph's heads flatten the batch into their second axis, frame after frame
    assert [output.shape for output in outputs] == [(1, 2 * 12 * 20, 1), (1, 2 * 3 * 5, 10)]


def test_threads_default_to_the_cores_shared_by_the_pool_processes() -> None:
    assert intra_op_threads(Settings(worker_concurrency=1)) == CORES
    assert intra_op_threads(Settings(worker_concurrency=CORES)) == 1
    assert intra_op_threads(Settings(worker_concurrency=CORES * 4)) == 1  # never 0
    assert intra_op_threads(Settings(worker_threads=3, worker_concurrency=CORES)) == 3


def test_execution_providers_are_read_comma_separated_and_map_to_onnx_runtime_names() -> None:
    assert Settings().execution_providers == ["cpu"]
    assert Settings(execution_providers="cuda, cpu").execution_providers == ["cuda", "cpu"]
    with pytest.raises(ValidationError, match="'cpu', 'cuda', 'tensorrt' or 'openvino'"):
        Settings(execution_providers="rocm")
    assert onnx_providers(["cpu"]) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("name", "install"),
    [("cuda", "onnxruntime-gpu"), ("tensorrt", "onnxruntime-gpu"), ("openvino", "onnxruntime-openvino")],
)
def test_a_provider_this_onnx_runtime_lacks_is_refused_naming_what_to_install(name, install) -> None:
    assert onnxruntime.get_available_providers() == ["AzureExecutionProvider", "CPUExecutionProvider"]  # CPU build
    with pytest.raises(ExecutionProviderError, match=f"asks for {name}, but .* install {install}"):
        onnx_providers([name])


def test_the_worker_does_not_start_with_a_missing_provider() -> None:
    env = {**os.environ, "FACEQUEUE_EXECUTION_PROVIDERS": "cuda"}
    done = subprocess.run(
        [sys.executable, "-m", "facequeue", "worker", "--pools", "cpu"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert "error: FACEQUEUE_EXECUTION_PROVIDERS asks for cuda" in done.stderr
    assert "install onnxruntime-gpu==1.31.1 (in place of onnxruntime)" in done.stderr


def _shared_images() -> list[Path]:
    return sorted(path for path in SHARED_TESTDATA.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))


@pytest.mark.testdata
def test_yunet_on_onnx_runtime_finds_opencvs_faces_on_every_shared_image() -> None:
    onnx, opencv = get_detector("yunet"), OpenCVYuNet()
    images, faces, worst_iou, worst_score, worst_point = 0, 0, 1.0, 0.0, 0.0
    for path in _shared_images():
        image = cv2.imread(str(path))
        found, expected = detect_faces(onnx, image, 640), detect_faces(opencv, image, 640)
        assert len(found) == len(expected), path.name
        if expected:
            iou = box_iou(np.array([f.box for f in expected]), np.array([f.box for f in found]))
            match = iou.argmax(axis=1)
            assert sorted(match) == list(range(len(found))), path.name  # one to one
            worst_iou = min(worst_iou, float(iou.max(axis=1).min()))
            for face, index in zip(expected, match, strict=True):
                worst_score = max(worst_score, abs(face.score - found[index].score))
                worst_point = max(worst_point, float(np.abs(face.landmarks - found[index].landmarks).max()))
        images, faces = images + 1, faces + len(expected)
    assert images == 125 and faces > 300  # measured: 353 faces at IoU >= 0.99999, scores within 5e-7, points 1e-4
    assert worst_iou >= 0.9 and worst_score <= 0.01
    assert worst_point <= 0.01  # px, in the images' own pixels (up to 4x the working size)
