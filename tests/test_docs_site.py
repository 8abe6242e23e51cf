"""The README and the documentation site (mkdocs.yml, docs/) stay true to the code: they name only real settings,
routes and commands and miss none, the configuration page is the settings class, the site builds strictly and
offline, and nothing in them points outside the repository."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from facequeue_client._config import API_KEY_ENV, SERVER_ENV
from typer.main import get_command

from api.app import create_app
from facequeue.cli import app
from facequeue.core.settings import Settings
from tests.conftest import REPO_ROOT

SETTING_NAMES = [f"FACEQUEUE_{name.upper()}" for name in Settings.model_fields]
CLIENT_VARIABLES = {SERVER_ENV, API_KEY_ENV}  # read by the CLI and the Python client, not by the service
# read by the test suite (tests/conftest.py) and the benchmarks (bench/running_services.py): a Postgres of your own
DEVELOPMENT_VARIABLES = {"FACEQUEUE_TEST_PG_ADMIN", "FACEQUEUE_BENCH_PG_ADMIN"}
DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
# What the site shows: the hand-written pages and the root files its pages include.
SHOWN_FILES = [*DOC_FILES, REPO_ROOT / "ARCHITECTURE.md", REPO_ROOT / "BENCHMARKS.md"]
# "seed" named the compatible APIs inside the team only; a random seed (the fuzzer's) is fine.
TEAM_WORDS = re.compile(r"\.\./shared|/work/|(?<!random )(?<!random-order-)\bseeds?\b", re.IGNORECASE)
FIXED_ADDRESS = re.compile(r"(?:localhost|127\.0\.0\.1):8000")


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", REPO_ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs_text() -> str:
    return "\n".join(path.read_text() for path in DOC_FILES)


def _normalized(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", text)  # /v1/detect/{id} and /v1/detect/{detect_task_id} are one route


def test_the_configuration_page_is_every_setting_in_order_with_its_description() -> None:
    table = _hook("settings_table").settings_table().splitlines()
    assert table[:2] == ["| variable | type | default | description |", "|---|---|---|---|"]
    rows = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in table[2:]]
    assert [row[0] for row in rows] == [f"`{name}`" for name in SETTING_NAMES]
    assert [name for name, *_, description in rows if not description] == []
    by_name = {row[0].strip("`"): row[1:] for row in rows}
    assert by_name["FACEQUEUE_DATA_DIR"][:2] == ["path", "`.facequeue`"]
    assert by_name["FACEQUEUE_DATABASE_URL"][:2] == ["string", "unset"]
    assert by_name["FACEQUEUE_DATABASE_CONNECT_TIMEOUT"][:2] == ["integer ≥ 2", "`2`"]
    assert by_name["FACEQUEUE_AUTH"][:2] == ["`on` or `off`", "`on`"]
    assert by_name["FACEQUEUE_DETECTOR_FUSION"][:2] == ["boolean", "`false`"]
    assert by_name["FACEQUEUE_BROKER_KEY_PREFIX"][:2] == ["string", "empty"]
    assert by_name["FACEQUEUE_WEBHOOK_RETRY_SCHEDULE"][:2] == [
        "comma-separated list",
        "`5,300,1800,7200,18000,36000,50400,72000,86400`",
    ]


def test_the_docs_name_only_real_settings_and_both_client_variables() -> None:
    named = set(re.findall(r"\b(FACEQUEUE_[A-Z0-9_]+)", _docs_text()))
    assert named - set(SETTING_NAMES) - CLIENT_VARIABLES - DEVELOPMENT_VARIABLES == set()
    assert CLIENT_VARIABLES <= named


def test_every_route_and_command_is_documented(tmp_path: Path) -> None:
    text = _normalized(_docs_text())
    routes = create_app(Settings(data_dir=tmp_path)).openapi()["paths"]
    assert [path for path in routes if _normalized(path) not in text] == []
    commands = set(get_command(app).commands)
    assert {command for command in commands if f"facequeue {command}" not in text} == set()


def test_no_team_paths_or_words_and_no_fixed_address_outside_the_export_line() -> None:
    found = {
        f"{path.relative_to(REPO_ROOT)}:{number}: {line}"
        for path in SHOWN_FILES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if TEAM_WORDS.search(line)
    }
    table = _hook("settings_table").settings_table()
    found |= {f"configuration table: {line}" for line in table.splitlines() if TEAM_WORDS.search(line)}
    assert found == set()
    addresses = [
        f"{path.relative_to(REPO_ROOT)}: {line}"
        for path in DOC_FILES
        for line in path.read_text().splitlines()
        if FIXED_ADDRESS.search(line)
    ]
    # said once, where `serve` tells the address; every example reads $FACEQUEUE_SERVER
    [export] = addresses
    assert export.startswith("README.md: export FACEQUEUE_SERVER=http://127.0.0.1:8000 ")


def test_every_curl_example_reads_the_server_from_the_environment() -> None:
    calls = re.findall(r"curl [^\n]*", _docs_text())
    assert len(calls) > 20
    assert [call for call in calls if '"$FACEQUEUE_SERVER' not in call] == []


def test_the_site_builds_strictly_offline_with_every_page_in_its_nav(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    assert config["theme"]["name"] == "material" and config["theme"]["font"] is False
    assert set(config.get("plugins", ["search"])) <= {"search"}  # Material's search ships its own assets
    pages = {str(path.relative_to(REPO_ROOT / "docs")) for path in DOC_FILES[1:]}
    assert set(re.findall(r":\s+(\S+\.md)$", (REPO_ROOT / "mkdocs.yml").read_text(), re.MULTILINE)) == pages
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^docs: install\n\t.*\$\(BIN\)/mkdocs build --strict --site-dir site$", makefile, re.M)
    site = tmp_path / "site"
    done = subprocess.run(
        [str(REPO_ROOT / ".venv/bin/mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loads = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//')  # links (<a>) may leave
    assert [page.name for page in site.rglob("*.html") if loads.search(page.read_text())] == []
    configuration = (site / "configuration" / "index.html").read_text()
    assert [name for name in SETTING_NAMES if f"<code>{name}</code>" not in configuration] == []
    home = (site / "index.html").read_text()
    assert "Integrate in 5 minutes" in home and 'href="api/tasks/"' in home  # the README, its links for the site
    assert len(list((site / "bench" / "plots").glob("*.png"))) == len(list((REPO_ROOT / "bench/plots").glob("*.png")))


@pytest.mark.parametrize("name", ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"])
def test_a_root_file_a_page_includes_has_its_links_rewritten_for_the_site(name: str) -> None:
    included = _hook("includes").included(name)
    assert "](docs/" not in included and "](ARCHITECTURE.md" not in included and "](BENCHMARKS.md" not in included
    assert included.splitlines()[0] == (REPO_ROOT / name).read_text().splitlines()[0]
