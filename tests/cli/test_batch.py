"""`facequeue batch` against a real embedded service: a folder in name order, results downloaded, each result
and failure naming its file, URL or manifest line, files left out listed, a batch followed again after Ctrl-C,
and Ctrl-C on a terminal asking whether to cancel."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import cv2
from facequeue_client import Client

from tests.cli.conftest import run_cli
from tests.conftest import REPO_ROOT
from tests.identity.support import Head, scene

BATCH_ID = r"bt_[\w-]+"


def _results(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _faces(result: dict) -> int:
    return len(result["result"]["faces_obj"]["0"]["region"])


def test_a_folder_is_one_batch_in_name_order_with_its_results_downloaded(cli_env, photos, tmp_path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, photo in (("b", "two"), ("a", "one"), ("c", "none")):
        (folder / f"{name}.jpg").write_bytes(photos[photo].read_bytes())
    (folder / "notes.txt").write_text("not media: left out")
    (folder / "raw").mkdir()
    out = tmp_path / "results.jsonl"
    done = run_cli("batch", str(folder), "--out", str(out), "--defaults", '{"landmarks": "90"}', env=cli_env)
    assert done.returncode == 0, done.stderr
    batch_id = re.match(rf"batch ({BATCH_ID}):", done.stderr).group(1)
    assert done.stderr.splitlines() == [
        f"batch {batch_id}: 3 items submitted "
        f"(if interrupted, follow it with `facequeue batch --batch-id {batch_id} --out {out}`)",
        f"3 results written to {out}",
    ]
    assert done.stdout.splitlines() == [
        f"batch {batch_id} completed: 3 succeeded, 0 failed, 0 canceled of 3",
        f"  skipped {folder}/notes.txt: not an image or video extension (.jpg, .png, .mp4, ...)",
        f"  skipped {folder}/raw: a folder (folders inside are not read)",
    ]
    results = _results(out)
    assert [(line["position"], line["name"], line["status"], _faces(line)) for line in results] == [
        (0, f"{folder}/a.jpg", "succeeded", 1),
        (1, f"{folder}/b.jpg", "succeeded", 2),
        (2, f"{folder}/c.jpg", "succeeded", 0),
    ]
    assert len(results[1]["result"]["face_shape_set"]["0"]) == 2  # the defaults applied to every item


def test_failed_items_are_listed_by_name_and_exit_1(cli_env, photos, media_server, tmp_path) -> None:
    """Each failure and each result line names its item (a manifest's own name, else its URL, else its line),
    and the names are the server's to keep: following the batch again with --batch-id still shows them."""
    media_server.expect_request("/notes.jpg").respond_with_data(b"text", content_type="image/jpeg")
    text_url = media_server.url_for("/notes.jpg")
    manifest = tmp_path / "manifest.jsonl"
    items = [
        {"img": base64.b64encode(photos["one"].read_bytes()).decode(), "name": "crowd/astronaut.jpg"},
        {"img": base64.b64encode(b"text").decode()},
        {"url": text_url},
    ]
    manifest.write_text("".join(json.dumps(item) + "\n\n" for item in items))  # blank lines are not items
    done = run_cli("batch", str(manifest), env=cli_env)
    assert done.returncode == 1
    summary, *failures = done.stdout.splitlines()
    assert re.fullmatch(rf"batch {BATCH_ID} completed: 1 succeeded, 2 failed, 0 canceled of 3", summary)
    batch_id = summary.split()[1]
    assert done.stderr.splitlines()[-1] == f"results: `facequeue batch --batch-id {batch_id} --out results.jsonl`"
    unsupported = r"\(item (\d), task ([\w-]{24})\): unsupported_media: Unsupported media type: .*"
    line_name, url_name = f"{manifest} line 3", text_url
    assert [
        re.fullmatch(rf"  {re.escape(name)} {unsupported}", failure).group(1)
        for name, failure in zip((line_name, url_name), failures, strict=True)
    ] == ["1", "2"]

    out = tmp_path / "results.jsonl"
    resumed = run_cli("batch", "--batch-id", batch_id, "--out", str(out), env=cli_env)
    assert (resumed.returncode, resumed.stdout.splitlines()) == (1, done.stdout.splitlines())
    results = _results(out)
    assert [(line["name"], line["status"]) for line in results] == [
        ("crowd/astronaut.jpg", "succeeded"),
        (line_name, "failed"),
        (url_name, "failed"),
    ]
    failed_tasks = [re.search(r"task ([\w-]{24})", failure).group(1) for failure in failures]
    assert [line["detect_task_id"] for line in results[1:]] == failed_tasks


def _held_manifest(tmp_path, held_url: str, photo) -> str:
    manifest = tmp_path / "manifest.jsonl"
    items = [{"url": held_url}, {"img": base64.b64encode(photo.read_bytes()).decode()}]
    manifest.write_text("".join(json.dumps(item) + "\n" for item in items))
    return str(manifest)


def _default_sigint() -> None:
    """In the CLI's process before exec: Ctrl-C at its default. A child inherits an ignored SIGINT, and a library
    loaded earlier into this test process may have ignored it (Python then never installs its handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_without_a_terminal_leaves_the_batch_running_and_it_resumes(
    cli_env, held_media, photos, tmp_path
) -> None:
    held_url, release = held_media
    out = tmp_path / "results.jsonl"
    command = [sys.executable, "-m", "facequeue", "batch", _held_manifest(tmp_path, held_url, photos["one"])]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=REPO_ROOT,
        env=cli_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    submitted = process.stderr.readline()
    batch_id = re.match(rf"batch ({BATCH_ID}): 2 items submitted", submitted).group(1)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130, process.stderr.read()  # what it said, if it ended otherwise
    assert process.stderr.read().splitlines()[-1] == (
        f"batch {batch_id} goes on; follow it again with `facequeue batch --batch-id {batch_id} --out {out}`"
    )
    with Client(cli_env["FACEQUEUE_SERVER"], cli_env["FACEQUEUE_API_KEY"]) as client:
        assert client.batch_status(batch_id).status == "running"
    release()
    resumed = run_cli("batch", "--batch-id", batch_id, "--out", str(out), env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == f"batch {batch_id} completed: 2 succeeded, 0 failed, 0 canceled of 2\n"
    assert [(line["position"], _faces(line)) for line in _results(out)] == [(0, 1), (1, 1)]


def test_ctrl_c_on_a_terminal_asks_and_cancels_the_batch(cli_env, held_media, photos, tmp_path) -> None:
    held_url, _ = held_media
    parent, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "facequeue", "batch", _held_manifest(tmp_path, held_url, photos["one"])],
        cwd=REPO_ROOT,
        env={**cli_env, "TERM": "xterm"},
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    os.close(child)
    screen = _read_until(parent, "items submitted")
    batch_id = re.search(rf"batch ({BATCH_ID}): 2 items submitted", screen).group(1)
    process.send_signal(signal.SIGINT)
    _read_until(parent, f"cancel batch {batch_id}? [y/N]:")
    os.write(parent, b"y\n")
    screen = _read_until(parent, "items had finished)")
    assert process.wait(timeout=30) == 130
    os.close(parent)
    assert re.search(rf"batch {batch_id} canceled \(\d/2 items had finished\)", screen)
    with Client(cli_env["FACEQUEUE_SERVER"], cli_env["FACEQUEUE_API_KEY"]) as client:
        assert client.batch_status(batch_id).status == "canceled"


def _read_until(fd: int, text: str, timeout: float = 60) -> str:
    """What a terminal shows until `text` appears (escape codes left in)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"{text!r} not shown; the terminal shows:\n{seen}"
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def test_a_batch_searched_and_with_persons_lists_whom_it_met(cli_env, photos, tmp_path) -> None:
    """--search: the items that met the collection's faces, and whom; --persons: the persons seen in several
    items (her in a.jpg and c.jpg; him in b.jpg only)."""
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photos["one"].read_bytes())
    cv2.imwrite(str(folder / "b.jpg"), scene([Head("cameraman", 300, 60, 200)]))
    cv2.imwrite(str(folder / "c.jpg"), cv2.resize(cv2.imread(str(photos["one"])), (384, 384)))
    assert run_cli("collections", "create", "staff", env=cli_env).returncode == 0
    indexed = run_cli("index", str(photos["one"]), "--collection", "staff", "--external-id", "astronaut", env=cli_env)
    assert indexed.returncode == 0, indexed.stderr

    done = run_cli("batch", str(folder), "--search", "staff", "--persons", env=cli_env, timeout=300)
    assert done.returncode == 0, done.stderr
    batch_id = re.match(rf"batch ({BATCH_ID}):", done.stderr).group(1)
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        f"batch {batch_id} completed: 3 succeeded, 0 failed, 0 canceled of 3",
        "2 items met faces of the collection",
        f"  {folder}/a.jpg: astronaut",
        f"  {folder}/c.jpg: astronaut",
        "2 persons across the batch, 1 of them in several items",
    ]
    assert re.fullmatch(rf"  bp_[\w-]+: {folder}/a.jpg, {folder}/c.jpg", lines[5])
    assert len(lines) == 6

    # followed again, the batch still says it has persons; a missing collection is one line, nothing sent
    again = run_cli("batch", "--batch-id", batch_id, env=cli_env)
    assert again.stdout.splitlines()[1:] == lines[4:]
    missing = run_cli("batch", str(folder), "--search", "nowhere", env=cli_env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "collection nowhere not found" in missing.stderr
