"""Schemathesis against the live API (issue 10, section 4): `uvicorn api.app:create_app` in its own process
with API keys on, a real Celery worker, Postgres and Redis behind them (tests/conftest.py's database), and a
key whose rate limit fuzzing never reaches. Deselected unless the run's -m names `fuzz` (`make fuzz`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import WorkerProcess
from tests.support import api_process
from tests.test_tenants import new_key

FUZZ_RATE = "100000/second"  # far above what one fuzzing client sends: 429 would hide every other answer
SUMMARY: list[str] = []  # the run's counts, printed at the end whether it passed or not


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "fuzz" in (config.option.markexpr or ""):
        return
    fuzz = [item for item in items if "fuzz" in item.keywords]
    if fuzz:
        config.hook.pytest_deselected(items=fuzz)
        items[:] = [item for item in items if "fuzz" not in item.keywords]


def pytest_terminal_summary(terminalreporter) -> None:
    if SUMMARY:
        terminalreporter.section("fuzzing (schemathesis)")
        for line in SUMMARY:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    key: str
    log_path: Path
    worker: WorkerProcess

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def live_api(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    folder = tmp_path_factory.mktemp("fuzz")
    worker = WorkerProcess("fuzz-worker", folder / "worker.log", {}, concurrency=1)
    log_path = folder / "api.log"
    try:
        worker.wait_ready()
        # a synchronous call that waits (a download hanging) answers its timeout well before the client's 30 s
        with api_process(log_path, FACEQUEUE_AUTH="on", FACEQUEUE_SYNC_TIMEOUT="10") as (base_url, _process):
            yield LiveApi(base_url, new_key(f"fuzz-{os.getpid()}", rate=FUZZ_RATE), log_path, worker)
    finally:
        worker.stop()
