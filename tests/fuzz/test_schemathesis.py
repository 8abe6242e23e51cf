"""Every native and compat route, fuzzed from the live /openapi.json with a valid key: no server error, and
every answer in a status, content type and schema its operation declares (issue 10, section 4).

Schemathesis' own runner (its CLI, in a subprocess) goes through its phases: the document's examples, the
coverage cases (boundaries and each kind of invalid value), then random cases; tests/fuzz/schemathesis.toml
sets the checks, the seed and how many cases. The seeds' own 5xx answers to a failed task are allowed on
their three operations there, so the logs are checked too: no request and no task may have crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.fuzz.conftest import SUMMARY, LiveApi

pytestmark = [pytest.mark.fuzz, pytest.mark.integration]

CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_TIMEOUT = 900  # seconds; a run takes 2 to 5 minutes on 2 cores


def test_live_api_answers_as_documented(live_api: LiveApi, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color"),
        *("run", f"{live_api.base_url}/openapi.json", "--report", "json", "--report-json-path", str(report_path)),
    ]
    # Hypothesis keeps its caches out of the work tree too
    env = {**os.environ, "FUZZ_API_KEY": live_api.key, "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp_path / "hypothesis")}
    run = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    output = f"{run.stdout[-30000:]}\n{run.stderr[-5000:]}"
    assert report_path.exists(), f"schemathesis did not run:\n{output}"
    report = json.loads(report_path.read_text())
    cases, operations = report["test_cases"], report["operations"]
    SUMMARY.append(
        f"{cases['generated']} generated cases on {operations['tested']} of {operations['total']} operations "
        f"in {report['running_time']:.0f} s (seed {report['seed']}): {cases['with_failures']} with failures, "
        f"{cases['errored']} errored"
    )
    assert run.returncode == 0, f"schemathesis found failures:\n{output}"
    assert operations["tested"] == operations["total"]
    # A bug behind an answer the document allows: the API logs every unexpected exception with its traceback,
    # a worker logs detect_crashed when a bug ended a task.
    assert "Traceback" not in live_api.log()
    assert "detect_crashed" not in live_api.worker.log()
