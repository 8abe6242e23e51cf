"""Rendering deploy/k8s with `kubectl kustomize` (kubectl renders without a cluster)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import IN_CI, REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")


def kubectl() -> str:
    """kubectl's path; outside CI its absence skips, in CI it fails."""
    path = shutil.which("kubectl")
    if path is None:
        if IN_CI:
            pytest.fail("kubectl is not installed: CI renders deploy/k8s with `kubectl kustomize`")
        pytest.skip("kubectl is not installed (needed to render deploy/k8s)")
    return path


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)


def render(overlay: str, workdir: Path) -> list[dict]:
    """The overlay's resources, rendered from a copy of deploy/k8s whose secrets.env is the committed example
    (the real secrets.env is never committed, and the overlay refuses to render without one)."""
    copy = workdir / "k8s"
    shutil.copytree(K8S, copy)
    overlay_dir = copy / "overlays" / overlay
    shutil.copy(overlay_dir / "secrets.env.example", overlay_dir / "secrets.env")
    result = kustomize(overlay_dir)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict]]:
    return request.param, render(request.param, tmp_path_factory.mktemp(request.param))


def find(resources: list[dict], kind: str, name: str) -> dict:
    matches = [item for item in resources if item["kind"] == kind and item["metadata"]["name"].startswith(name)]
    assert len(matches) == 1, (kind, name, [item["metadata"]["name"] for item in matches])
    return matches[0]


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only
