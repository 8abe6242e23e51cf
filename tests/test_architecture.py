"""The layers contract covers every module of the shared package, and product modules stay small (ARCHITECTURE.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("api", "db", "facequeue", "workers")
MAX_MODULE_LINES = 300  # the limit is 300 (issue 18): room for a docstring, not for a second concern


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return contract["layers"]


def test_the_layers_are_the_designed_ones() -> None:
    assert _layers() == [
        "facequeue.cli",
        "api | workers",
        "facequeue.lifecycle | migrations",
        "facequeue.plumbing",
        "db",
        "facequeue.core",
    ]


def test_every_module_of_the_shared_package_is_in_a_layer() -> None:
    # A module loose in facequeue/ would escape the contract: import-linter only checks listed layers.
    loose = {path.name for path in (ROOT / "facequeue").glob("*.py")} - {"__init__.py", "__main__.py"}
    rooms = {path.name for path in (ROOT / "facequeue").iterdir() if (path / "__init__.py").is_file()}
    assert (loose, rooms) == (set(), {"cli", "core", "lifecycle", "plumbing"})


def test_no_product_module_is_over_the_size_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for package in PRODUCT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
