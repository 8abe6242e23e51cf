"""README's "Integrate in 5 minutes", run as written: its sh and python blocks against a real `facequeue serve`
(test_embedded's fixture), with FACEQUEUE_SERVER and FACEQUEUE_API_KEY set as step 1 tells the reader to."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest

from facequeue.cli.demo import Placement, astronaut_bgr, compose
from facequeue.core.errors import ErrorCode, TaskError
from tests.conftest import REPO_ROOT
from tests.support import free_port, wait_until
from tests.test_embedded import embedded_server  # noqa: F401  (a `facequeue serve`, started once per module)
from tests.webhooks.test_receiver import readme_receiver

SECTION_TITLE = "## Integrate in 5 minutes"
# a fenced block, indented under its list item: the same indentation opens and closes it
FENCED_BLOCK = re.compile(r"^( *)```(sh|python)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)


def quickstart_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index(SECTION_TITLE)
    return readme[start : readme.index("\n## ", start + len(SECTION_TITLE))]


def quickstart_blocks() -> list[tuple[str, str]]:
    return [(language, textwrap.dedent(body)) for _, language, body in FENCED_BLOCK.findall(quickstart_section())]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A folder laid out like the reader's clone: `.venv` (this one), photo.jpg (one face), photos/ (2 images)."""
    folder = tmp_path_factory.mktemp("clone")
    (folder / ".venv").symlink_to(REPO_ROOT / ".venv")
    cv2.imwrite(str(folder / "photo.jpg"), astronaut_bgr())
    (folder / "photos").mkdir()
    cv2.imwrite(str(folder / "photos" / "a.jpg"), astronaut_bgr())
    group = compose(640, 360, [Placement(x=60, y=80, height=180), Placement(x=380, y=80, height=180, mirrored=True)])
    cv2.imwrite(str(folder / "photos" / "b.jpg"), group)
    return folder


@pytest.fixture(scope="module")
def run_block(embedded_server, clone: Path):  # noqa: F811
    url, _, key, _ = embedded_server
    env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
    env.update(FACEQUEUE_SERVER=url, FACEQUEUE_API_KEY=key)

    def run(language: str, code: str, cwd: Path = clone) -> str:
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (code, done.stdout, done.stderr)
        return done.stdout

    return run


def test_the_section_has_its_steps_in_order() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.index("## The two commands") < readme.index(SECTION_TITLE) < readme.index("## Documentation")
    assert [language for language, _ in quickstart_blocks()] == ["sh", "sh", "python", "sh", "sh", "sh", "python"]
    assert quickstart_blocks()[6][1].startswith("# receiver.py")


def test_step_1_names_real_commands_and_the_line_serve_prints() -> None:
    section = quickstart_section()
    assert "`make run`" in section and re.search(r"^run:", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE)
    for command in (["serve", "--help"], ["keys", "create", "--help"]):
        assert f"facequeue {' '.join(command[:-1])}" in section
        done = subprocess.run([str(REPO_ROOT / ".venv/bin/facequeue"), *command], capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
    serve_source = (REPO_ROOT / "facequeue/cli/serve.py").read_text()
    printed = "first API key, for tenant 'default' (shown once, store it now): "
    assert printed in serve_source and f"`{printed}fq_...`" in section
    export = quickstart_blocks()[0][1]
    assert export.startswith("export FACEQUEUE_SERVER=http://127.0.0.1:8000 FACEQUEUE_API_KEY=fq_...")


def test_curl_submits_with_the_key_and_polls_to_one_face(run_block) -> None:
    assert run_block(*quickstart_blocks()[1]) == "succeeded 1 face(s)\n"


def test_curl_prints_the_status_and_the_error_of_a_task_that_failed(run_block, tmp_path: Path) -> None:
    """Step 2 as written, on a photo.jpg that holds text: the task fails, and the snippet says how."""
    (tmp_path / "photo.jpg").write_text("not a photo\n")
    out = run_block(*quickstart_blocks()[1], cwd=tmp_path)
    error = TaskError(ErrorCode.UNSUPPORTED_MEDIA, "text, not an image or video (starts with 'not a photo\\n')")
    assert out == f"failed unsupported_media: {error.message}\n"


def test_the_python_client_detects_one_face(run_block) -> None:
    assert run_block(*quickstart_blocks()[2]) == "succeeded 1 face(s)\n"


def test_the_cli_batch_writes_one_result_per_photo(run_block, clone: Path) -> None:
    out = run_block(*quickstart_blocks()[3]).splitlines()
    assert re.fullmatch(r"batch bt_\S+ completed: 2 succeeded, 0 failed, 0 canceled of 2", out[0]), out
    assert out[1:] == ["2"]
    results = [json.loads(line) for line in (clone / "results.jsonl").read_text().splitlines()]
    assert [(line["position"], line["status"]) for line in results] == [(0, "succeeded"), (1, "succeeded")]


def test_the_cli_indexes_a_face_and_finds_it_in_the_group_photo(run_block) -> None:
    out = run_block(*quickstart_blocks()[4]).splitlines()
    assert out[0] == "collection staff created"
    assert re.fullmatch(r"task \S+: 1 face indexed into collection staff as alice", out[1]), out
    [face_id] = re.fullmatch(r"  frame 0, face 0: face_id (\S+)", out[2]).groups()
    assert re.fullmatch(r"task \S+: 2 faces searched in collection staff, 2 with a match", out[3]), out
    for face in (0, 1):  # the two astronauts of photos/b.jpg, one of them mirrored
        assert out[4 + 2 * face] == f"  frame 0, face {face}: 1 match"
        assert re.fullmatch(rf"    {face_id}  alice  0\.\d{{3}}", out[5 + 2 * face]), out
    assert len(out) == 8


def test_the_readme_receiver_verifies_the_next_task_s_event(run_block, clone: Path) -> None:
    """Step 6 as written, but on a free port instead of 9000 (another test may hold it); then step 3's task."""
    port = free_port()
    out = run_block(*(block.replace(":9000", f":{port}") for block in quickstart_blocks()[5])).splitlines()
    assert json.loads(out[0])["url"] == f"http://127.0.0.1:{port}/facequeue"
    assert re.fullmatch(r"whsec_\S+", out[1]), out
    (clone / "receiver.py").write_text(readme_receiver())
    [start_receiver] = re.findall(
        r"`(WEBHOOK_SECRET=\S+ \.venv/bin/uvicorn receiver:app --port) 9000`", quickstart_section()
    )
    log_path = clone / "receiver.log"
    with log_path.open("wb") as log:
        receiver = subprocess.Popen(
            ["bash", "-c", f"{start_receiver} {port}"],
            cwd=clone,
            env={**os.environ, "WEBHOOK_SECRET": out[1], "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_listening(port, receiver, log_path)
            assert run_block(*quickstart_blocks()[2]) == "succeeded 1 face(s)\n"
            wait_until(
                log_path.read_text,
                until=lambda log: re.search(r"^detect_task\.succeeded \S+ None$", log, re.MULTILINE),
                timeout=30,
                what="the receiver printed the task's event",
            )
        finally:
            if receiver.poll() is None:
                os.killpg(receiver.pid, signal.SIGTERM)  # bash and its uvicorn
            receiver.wait(timeout=15)
    assert "bad signature" not in log_path.read_text()


def wait_listening(port: int, process: subprocess.Popen, log_path: Path) -> None:
    def listening() -> bool:
        assert process.poll() is None, f"the receiver exited:\n{log_path.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_until(listening, timeout=30, what=f"the receiver listening on {port}", interval=0.1)
