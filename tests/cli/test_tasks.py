"""`facequeue detect|get|list|cancel|delete` against a real embedded service, the one-line errors a user can
meet there, and the block `serve` starts with."""

from __future__ import annotations

import json
import re

import cv2

from tests.cli.conftest import error_line, run_cli

TASK_ID = r"[\w-]{24}"
WORKER_LINE = re.compile(r"\[(celery|workers)\.[\w.]+\]")  # a log line's logger, as the console renders it


def test_detect_prints_a_short_summary(cli_env, photos) -> None:
    done = run_cli("detect", str(photos["one"]), env=cli_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(rf"task {TASK_ID} succeeded in [\d.]+s — image 512x512 \(image/jpeg\): 1 face", lines[0])
    assert re.fullmatch(r"  frame 0: 1 face \(score 0\.\d\d\)", lines[1])
    assert lines[2].startswith("  detector yunet ") and lines[3].startswith("  timings download ")
    assert len(lines) == 4 and done.stderr == ""  # no progress bar without a terminal


def test_detect_options_json_and_out(cli_env, photos, tmp_path) -> None:
    out = tmp_path / "task.json"
    done = run_cli(
        "detect", str(photos["two"]), "--single-face", "--landmarks", "90", "--json", "--out", str(out), env=cli_env
    )
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert json.loads(out.read_text()) == task
    frame = task["result"]["faces_obj"]["0"]
    assert task["status"] == "succeeded" and len(frame["region"]) == 1  # --single-face kept the largest of two
    assert len(task["result"]["face_shape_set"]["0"]) == 1  # --landmarks 90


def test_detector_and_min_score_flags_reach_the_server(cli_env, photos) -> None:
    accurate = run_cli("detect", str(photos["one"]), "--detector", "accurate", "--json", env=cli_env)
    assert accurate.returncode == 0, accurate.stderr
    result = json.loads(accurate.stdout)["result"]
    assert result["detector"]["name"] == "centerface" and len(result["faces_obj"]["0"]["region"]) == 1
    strict = run_cli("detect", str(photos["one"]), "--min-score", "1", "--json", env=cli_env)
    assert strict.returncode == 0, strict.stderr
    result = json.loads(strict.stdout)["result"]
    assert result["detector"]["name"] == "yunet" and result["faces_obj"]["0"]["region"] == []  # no score reaches 1


def test_annotate_saves_the_servers_annotated_picture(cli_env, photos, tmp_path) -> None:
    picture = tmp_path / "annotated.jpg"
    done = run_cli("detect", str(photos["two"]), "--annotate", str(picture), env=cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"annotated picture saved to {picture}\n"
    image = cv2.imread(str(picture))
    assert image is not None and image.shape[:2] == (360, 640)


def test_demo_detects_the_moving_face_in_each_sampled_frame(cli_env) -> None:
    done = run_cli("demo", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"video 640x360, 3\.00s at 25 fps \(video/mp4\): 5 frames analysed, 5 faces$", done.stdout.splitlines()[0]
    )


def test_no_wait_prints_the_id_and_get_shows_the_task(cli_env, photos) -> None:
    submitted = run_cli("detect", str(photos["two"]), "--no-wait", env=cli_env)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert re.fullmatch(TASK_ID, task_id)
    shown = run_cli("get", task_id, "--json", env=cli_env)
    assert json.loads(shown.stdout)["detect_task_id"] == task_id


def test_list_shows_the_tenants_tasks_newest_first_with_a_status_filter(cli_env, photos) -> None:
    ids = [run_cli("detect", str(photos[name]), env=cli_env).stdout.split()[1] for name in ("one", "none")]
    listed = run_cli("list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]  # under the header and its rule
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (ids[1], "succeeded", "image"),
        (ids[0], "succeeded", "image"),
    ]
    assert run_cli("list", "--limit", "1", env=cli_env).stdout.count("succeeded") == 1
    nothing = run_cli("list", "--status", "failed", env=cli_env)
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "no tasks with status failed\n")


def test_cancel_then_delete_a_running_task(cli_env, held_media) -> None:
    url, release = held_media
    task_id = run_cli("detect", url, "--no-wait", env=cli_env).stdout.strip()
    canceled = run_cli("cancel", task_id, env=cli_env)
    assert (canceled.returncode, canceled.stdout) == (0, f"task {task_id} canceled\n"), canceled.stderr
    release()
    assert run_cli("cancel", task_id, env=cli_env).stdout == f"task {task_id} canceled\n"  # once or twice
    deleted = run_cli("delete", task_id, env=cli_env)
    assert (deleted.returncode, deleted.stdout) == (0, f"task {task_id} (canceled): result and media deleted\n")


def test_cancel_keeps_a_finished_task_and_delete_removes_its_result(cli_env, photos) -> None:
    task_id = run_cli("detect", str(photos["one"]), env=cli_env).stdout.split()[1]
    not_canceled = run_cli("cancel", task_id, env=cli_env)
    assert not_canceled.stdout == f"task {task_id} had already succeeded; its result is kept\n"
    assert run_cli("delete", task_id, env=cli_env).returncode == 0
    shown = run_cli("get", task_id, env=cli_env)
    assert shown.stdout == f"task {task_id} succeeded (its result was deleted)\n"


def test_a_failed_task_exits_1_with_its_error(cli_env, tmp_path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image at all\n" * 10)
    done = run_cli("detect", str(notes), env=cli_env)
    assert done.returncode == 1
    first, hint = done.stdout.splitlines()
    assert re.fullmatch(rf"task {TASK_ID} failed: unsupported_media: Unsupported media type: .*", first)
    assert hint == "  hint: send an image (JPEG, PNG, WebP, ...) or a video (MP4, MOV, WebM, ...)"


def test_a_bad_key_is_one_line_saying_how_to_make_one(cli_env, photos) -> None:
    line = error_line(run_cli("detect", str(photos["one"]), env={**cli_env, "FACEQUEUE_API_KEY": "fq_not-a-key"}))
    assert line == (
        "error: the server refused the request: Invalid API key — make a key with `facequeue keys create "
        "--tenant NAME` where the service runs, then pass it as FACEQUEUE_API_KEY (or --api-key)"
    )


def test_a_forbidden_url_is_one_line_naming_the_setting(cli_env) -> None:
    line = error_line(run_cli("detect", "http://10.20.30.40/group.jpg", env=cli_env))
    assert line == (
        "error: the server may not fetch this URL: Failed to download media from URL: address 10.20.30.40 is "
        "private — it refuses private and local addresses; its operator can allow a host with FACEQUEUE_ALLOWED_HOSTS"
    )


def test_an_unknown_task_is_one_line(cli_env) -> None:
    line = error_line(run_cli("get", "no-such-task", env=cli_env))
    assert line == "error: detect task no-such-task not found — `facequeue list` shows your tasks"


def test_serve_starts_with_a_short_clean_block(server) -> None:
    url, data_dir = server
    log = (data_dir / "serve.log").read_text()
    # the worker starts beside the API and writes to the same terminal: its lines may come before the banner
    lines = [line for line in log.splitlines() if not WORKER_LINE.search(line)]
    start = next(n for n, line in enumerate(lines) if line.startswith("facequeue (Postgres and Redis started"))
    assert lines[start + 1 : start + 4] == [f"  API      {url}", f"  docs     {url}/docs", f"  console  {url}/console"]
    database = f"postgresql+psycopg://postgres@/facequeue?host={data_dir}/run"
    assert lines[start + 4].startswith(f"  data lives in {data_dir}: database {database}, broker redis+socket://")
    assert lines[start + 5].startswith("  first API key, for tenant 'default' (shown once, store it now): fq_")
    assert lines[:start] == [f"database at {database} is up to date"]
    # hidden unless --verbose: Celery's banner, kombu's hostname warnings, the warning about root, migrations
    for noise in ("[config]", "No hostname was supplied", "SecurityWarning", "superuser", "Running upgrade"):
        assert noise not in log
