"""Deploy files stay true to the code (Docker cannot run here, so check what can be checked), and the README gives
the two commands CI runs. The README and the docs site are checked in test_docs_site.py."""

from __future__ import annotations

import re
import tomllib

import yaml
from typer.main import get_command

from facequeue.cli import app
from facequeue.core.settings import Settings
from tests.conftest import REPO_ROOT

SETTING_NAMES = {f"FACEQUEUE_{name.upper()}" for name in Settings.model_fields}
CLI_COMMANDS = set(get_command(app).commands)


def _facequeue_commands(text: str) -> set[str]:
    return set(re.findall(r"facequeue[\"',\s]+([a-z-]+)", text))


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^run: install\n\t\$\(BIN\)/facequeue serve --demo$", makefile, re.M)
    assert re.search(r"^test: install\n\t\$\(BIN\)/pytest -n 3$", makefile, re.M)


def test_compose_uses_real_settings_and_commands() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        assert {key for key in env if key.startswith("FACEQUEUE_")} <= SETTING_NAMES, name
        command = service.get("command") or []
        if command and command[0] == "facequeue":
            assert command[1] in CLI_COMMANDS, (name, command)
    assert compose["services"]["worker"]["deploy"]["replicas"] >= 2


def test_env_example_and_systemd_units_name_real_settings_and_commands() -> None:
    example = (REPO_ROOT / "deploy" / "facequeue.env.example").read_text()
    assert set(re.findall(r"^(FACEQUEUE_[A-Z0-9_]+)=", example, re.M)) <= SETTING_NAMES
    for unit in REPO_ROOT.glob("deploy/*.service"):
        assert _facequeue_commands(unit.read_text()) <= CLI_COMMANDS, unit.name


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    for package in packages:
        name = package.rstrip("*")
        assert re.search(rf"^COPY {name} \./{name}$", dockerfile, re.M), name
