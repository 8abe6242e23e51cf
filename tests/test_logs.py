"""FACEQUEUE_LOG_FORMAT=json on a real `facequeue serve` (API, supervised worker, pool): every line it writes,
on stdout and stderr, from start to shutdown, is one JSON object, with request and task ids bound."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import httpx
import psycopg
import pytest

from facequeue.cli.demo import astronaut_bgr
from tests.support import start_server, wait_for_final, wait_until

SUBMIT_REQUEST_ID = "submit-ok.1"


@pytest.fixture(scope="module")
def json_run(tmp_path_factory) -> dict:
    """Runs serve once: a task that succeeds, one that fails, a refused request; then SIGTERM. Returns what
    the run printed and what the test sent."""
    data_dir = tmp_path_factory.mktemp("json-logs")
    env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
    env.update(FACEQUEUE_DATA_DIR=str(data_dir), FACEQUEUE_LOG_FORMAT="json", FACEQUEUE_LOG_LEVEL="INFO")
    stdout, stderr = data_dir / "stdout.log", data_dir / "stderr.log"
    server, process = start_server(
        lambda port: [sys.executable, "-m", "facequeue", "serve", "--port", str(port)],
        stdout,
        env,
        ready_path="/readyz",
        cwd=data_dir,
        stderr_path=stderr,
        new_session=True,
        timeout=90,
    )
    try:
        # printed once the API answers, which may be after /readyz first did
        key_lines = wait_until(
            lambda: [line for line in _lines(stderr) if line["event"] == "first_api_key"],
            timeout=30,
            what="the first_api_key line",
        )
        key = key_lines[0]["api_key"]
        sent = _submit_tasks(server, key)
        with psycopg.connect(host=str(data_dir / "run"), user="postgres", dbname="facequeue") as database:
            (tenant_id,) = database.execute("SELECT id FROM tenants WHERE name = 'default'").fetchone()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    return {"stdout": stdout.read_text(), "stderr": stderr.read_text(), "tenant_id": tenant_id, **sent}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _submit_tasks(server: str, key: str) -> dict:
    image = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()
    not_media = base64.b64encode(b"plain text, not an image\n" * 4).decode()
    with httpx.Client(base_url=server, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        submitted = client.post("/v1/detect", json={"img": image}, headers={"X-Request-ID": SUBMIT_REQUEST_ID})
        assert submitted.headers["X-Request-ID"] == SUBMIT_REQUEST_ID
        succeeded = wait_for_final(client, submitted.json()["detect_task_id"])
        failed = wait_for_final(client, client.post("/v1/detect", json={"img": not_media}).json()["detect_task_id"])
    refused = httpx.post(f"{server}/v1/detect", json={"img": image}, timeout=10)  # no key
    assert (succeeded["status"], failed["status"], refused.status_code) == ("succeeded", "failed", 401)
    assert failed["error"]["code"] == "unsupported_media"
    return {"succeeded": succeeded, "failed": failed, "refused_request_id": refused.headers["X-Request-ID"]}


def test_every_line_of_the_run_is_one_json_object(json_run) -> None:
    lines = json_run["stdout"].splitlines() + json_run["stderr"].splitlines()
    plain = []
    for line in lines:
        try:
            if not isinstance(json.loads(line), dict):
                plain.append(line)
        except json.JSONDecodeError:
            plain.append(line)
    assert plain == []
    events = {(line["logger"], line["event"]) for line in map(json.loads, lines)}
    # the run's parts, each through the one handler: the CLI, alembic, the API, Celery's worker and its tasks
    assert {
        ("facequeue.cli", "first_api_key"),
        ("alembic.runtime.migration", "Will assume transactional DDL."),
        ("api.request_ids", "request"),
        ("workers.celery_app", "worker_ready"),
        ("workers.pipeline", "detect_finished"),
        ("celery.apps.worker", "worker: Warm shutdown (MainProcess)"),  # Celery writes it past logging
    } <= events
    assert all({"timestamp", "level", "logger", "event"} <= json.loads(line).keys() for line in lines)


def test_request_lines_carry_their_request_id(json_run) -> None:
    requests = [line for line in map(json.loads, json_run["stderr"].splitlines()) if line["event"] == "request"]
    assert requests and all(line["request_id"] for line in requests)
    assert all({"method", "route", "path", "status", "duration_ms"} <= line.keys() for line in requests)
    (submit,) = [line for line in requests if line["request_id"] == SUBMIT_REQUEST_ID]
    assert (submit["method"], submit["route"], submit["status"]) == ("POST", "/v1/detect", 202)
    (refused,) = [line for line in requests if line["request_id"] == json_run["refused_request_id"]]
    assert (refused["method"], refused["route"], refused["status"]) == ("POST", "/v1/detect", 401)
    task_id = json_run["succeeded"]["detect_task_id"]
    polls = [line for line in requests if line["path"] == f"/v1/detect/{task_id}"]
    assert polls and {line["route"] for line in polls} == {"/v1/detect/{detect_task_id}"}
    assert len({line["request_id"] for line in requests}) == len(requests)  # one id per request


def test_task_lines_carry_task_tenant_and_attempt(json_run) -> None:
    lines = list(map(json.loads, json_run["stderr"].splitlines()))
    for task, error in ((json_run["succeeded"], None), (json_run["failed"], "unsupported_media")):
        task_lines = [line for line in lines if line.get("task_id") == task["detect_task_id"]]
        assert [
            line for line in task_lines if (line.get("tenant"), line.get("attempt")) != (json_run["tenant_id"], 1)
        ] == []
        (finished,) = [line for line in task_lines if line["event"] == "detect_finished"]
        assert finished["error"] == error
        # Celery's own line about the run carries the context too: it is bound once, where the run starts
        (traced,) = [line for line in task_lines if line["logger"] == "celery.app.trace"]
        assert traced["event"].startswith("Task facequeue.detect[") and " succeeded in " in traced["event"]
