"""User errors found before or without a service: each is one line with a hint and exit status 1, never a
traceback; and the operator commands find the data directory, or say where they looked, creating nothing."""

from __future__ import annotations

from tests.cli.conftest import clean_env, error_line, run_cli
from tests.support import free_port

MIGRATE_HINT = "run `facequeue migrate` to create it, or set FACEQUEUE_DATA_DIR to the service's data directory"


def test_an_unreachable_server_is_one_line_naming_FACEQUEUE_SERVER(photos) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    expected = (
        f"error: cannot reach the facequeue server at {url} ([Errno 111] Connection refused) — "
        f"is `facequeue serve` running? FACEQUEUE_SERVER={url} (or --server) says where it listens"
    )
    env = clean_env(FACEQUEUE_SERVER=url)
    assert error_line(run_cli("detect", str(photos["one"]), env=env)) == expected
    assert error_line(run_cli("list", env=env)) == expected
    assert error_line(run_cli("batch", "--batch-id", "bt_x", "--server", url, env=clean_env())) == expected


def test_a_missing_file_or_a_folder_is_one_line(tmp_path) -> None:
    missing = tmp_path / "missing.jpg"
    line = error_line(run_cli("detect", str(missing), env=clean_env()))
    assert line == f"error: no such file: {missing} — give an image or video file, or an http(s) URL"
    line = error_line(run_cli("detect", str(tmp_path), env=clean_env()))
    assert line == f"error: {tmp_path} is a folder — `facequeue batch {tmp_path}` detects every image and video in it"
    line = error_line(run_cli("detect", env=clean_env()))
    assert (
        line == "error: nothing to detect — give an image or video file, an http(s) URL, or --frame-url URL (repeated)"
    )


def test_batch_input_is_checked_before_anything_is_sent(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("no media here")
    line = error_line(run_cli("batch", str(tmp_path), env=clean_env()))
    assert (
        line == f"error: no image or video files in {tmp_path} — files are picked by extension (.jpg, .png, .mp4, ...)"
    )
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"url": "https://example.com/a.jpg"}\n\n{"url": oops}\n')
    line = error_line(run_cli("batch", str(manifest), env=clean_env()))
    assert line == f"error: {manifest} line 3 is not JSON: Expecting value — a manifest holds one JSON object per line"
    line = error_line(run_cli("batch", str(tmp_path), "--defaults", "[1]", env=clean_env()))
    assert line == """error: --defaults must be a JSON object — write it as '{"num_frames": 10}'"""


def test_keys_list_elsewhere_says_where_it_looked_and_creates_nothing(tmp_path) -> None:
    line = error_line(run_cli("keys", "list", env=clean_env(), cwd=tmp_path))
    assert line == (
        f"error: no facequeue data directory at {tmp_path}/.facequeue (FACEQUEUE_DATA_DIR=.facequeue is relative to "
        f"the working directory) — {MIGRATE_HINT}"
    )
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty").mkdir()
    line = error_line(run_cli("keys", "list", env=clean_env(FACEQUEUE_DATA_DIR=str(tmp_path / "empty"))))
    assert line == f"error: no facequeue database in {tmp_path}/empty — {MIGRATE_HINT}"
    assert list((tmp_path / "empty").iterdir()) == []


def test_migrate_makes_the_data_directory_the_other_commands_then_find(tmp_path) -> None:
    migrated = run_cli("migrate", env=clean_env(), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / ".facequeue" / "postgres" / "PG_VERSION").is_file()
    created = run_cli("keys", "create", "--tenant", "acme", env=clean_env(), cwd=tmp_path)
    assert created.returncode == 0 and created.stdout.startswith("fq_"), created.stderr
    # from another folder, with the data directory named absolutely
    anywhere = clean_env(FACEQUEUE_DATA_DIR=str(tmp_path / ".facequeue"))
    listed = run_cli("keys", "list", env=anywhere, cwd=tmp_path.parent)
    assert listed.returncode == 0 and "acme" in listed.stdout, listed.stderr


def test_migrate_copies_an_earlier_releases_sqlite_data_dir_once(tmp_path) -> None:
    import shutil

    from tests.test_legacy_sqlite_import import FIRST_IMPORT, FIXTURE

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    legacy = data_dir / "facequeue.db"
    shutil.copy(FIXTURE, legacy)
    env = clean_env(FACEQUEUE_DATA_DIR=str(data_dir))
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert f"imported from {legacy}: {FIRST_IMPORT} (0 rows already there)" in first.stderr.replace("\n", " ")
    again = run_cli("migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert f"nothing new in {legacy}: its {FIRST_IMPORT} were already there" in again.stderr.replace("\n", " ")
    assert legacy.read_bytes() == FIXTURE.read_bytes()  # left in place, unchanged
    listed = run_cli("keys", "list", env=env)
    assert listed.returncode == 0 and "acme" in listed.stdout and "globex" in listed.stdout, listed.stderr
