"""GPU packaging, checked on a CPU-only machine: the `gpu` extra's lock and image file, and the gpu overlay as
`kubectl kustomize` renders it. Nothing here runs a GPU or builds an image (docs/deployment/gpu.md)."""

from __future__ import annotations

import re
import shutil
import tomllib

import kubernetes_validate
import pytest

from tests.conftest import REPO_ROOT
from tests.deploy.conftest import K8S, container, find, kustomize
from tests.deploy.test_k8s_manifests import KEDA_KINDS, KUBERNETES_VERSIONS

DEPLOY = REPO_ROOT / "deploy"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _pins(lock_name: str) -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+==\S+)", (DEPLOY / lock_name).read_text(), re.M))


def test_each_image_lock_holds_one_onnx_runtime_build() -> None:
    assert PYPROJECT["tool"]["uv"]["conflicts"] == [[{"extra": "cpu"}, {"extra": "gpu"}]]
    cpu, gpu = _pins("requirements.lock"), _pins("requirements-gpu.lock")
    assert {pin for pin in cpu ^ gpu} == {"onnxruntime==1.31.1", "onnxruntime-gpu==1.31.1"}
    assert "onnxruntime==1.31.1" in cpu and "onnxruntime-gpu==1.31.1" in gpu
    assert "--extra gpu" in (DEPLOY / "requirements-gpu.lock").read_text().splitlines()[1]


def test_make_install_takes_every_extra_but_gpu() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "$(UV) sync --locked --all-extras --no-extra gpu " in makefile


def test_the_gpu_dockerfile_installs_only_from_the_gpu_lock_on_a_cuda_runtime() -> None:
    dockerfile = (DEPLOY / "Dockerfile.gpu").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu22\.04", base)  # by tag: see its comment
    assert "pinned by TAG ONLY" in dockerfile
    installs = re.findall(r"pip install ([^\n&\\]+)", re.sub(r"#.*", "", dockerfile))
    assert [command.strip() for command in installs] == [
        "--no-deps --require-hashes -r deploy/requirements-gpu.lock",
        "--no-deps --no-build-isolation ./clients/python .",
    ]


@pytest.fixture(scope="module")
def gpu_resources(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    import yaml

    copy = tmp_path_factory.mktemp("gpu") / "k8s"
    shutil.copytree(K8S, copy)
    prod = copy / "overlays" / "prod"  # the gpu overlay builds on prod, which needs its secrets file
    shutil.copy(prod / "secrets.env.example", prod / "secrets.env")
    result = kustomize(copy / "overlays" / "gpu")
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def test_gpu_workers_request_a_gpu_on_gpu_nodes_with_the_cuda_provider(gpu_resources: list[dict]) -> None:
    worker = find(gpu_resources, "Deployment", "facequeue-worker")
    worker_container = container(worker)
    assert worker_container["image"] == "registry.example.com/facequeue:0.1.0-gpu"
    assert worker_container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert worker_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker_container["env"] == [{"name": "FACEQUEUE_EXECUTION_PROVIDERS", "value": "cuda"}]
    pod = worker["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    api = container(find(gpu_resources, "Deployment", "facequeue-api"))
    assert api["image"] == "registry.example.com/facequeue:0.1.0" and "nvidia.com/gpu" not in api["resources"]["limits"]


def test_the_gpu_overlay_validates_strictly(gpu_resources: list[dict]) -> None:
    for version in KUBERNETES_VERSIONS:
        for resource in gpu_resources:
            if resource["kind"] not in KEDA_KINDS:
                kubernetes_validate.validate(resource, version, strict=True)
