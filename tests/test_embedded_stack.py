"""The embedded Postgres and Redis live and die with `facequeue serve`: Ctrl-C stops every process it started, a
kill -9 of serve leaves none behind, and the next start clears their stale files and finds the data again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from facequeue.core.embedded_paths import postgres_dir, redis_dir, redis_socket
from facequeue.core.settings import Settings
from tests.support import start_server, wait_until
from tests.test_embedded import _first_key, descendants

# `facequeue serve` as a shell's background job starts it: with SIGINT ignored (kept through exec)
AS_BACKGROUND_JOB = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
]


def _serve(data_dir: Path, log_name: str, launcher: tuple[str, ...] = ()):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEQUEUE_")}
    env.update(FACEQUEUE_DATA_DIR=str(data_dir))
    return start_server(
        lambda port: [*launcher, sys.executable, "-m", "facequeue", "serve", "--port", str(port)],
        data_dir.parent / log_name,
        env,
        ready_path="/readyz",
        cwd=data_dir.parent,
        new_session=True,
        timeout=120,
    )


def _gone(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return alive


def test_kill_9_of_serve_leaves_no_process_and_the_next_start_reuses_the_data(tmp_path) -> None:
    data_dir = tmp_path / "data"
    url, serve = _serve(data_dir, "first.log")
    key = _first_key(tmp_path / "first.log")
    headers = {"Authorization": f"Bearer {key}"}
    tenant = httpx.get(f"{url}/v1/detect", headers=headers, timeout=10)
    assert tenant.status_code == 200
    started = descendants(serve.pid)
    assert {"postgres", "redis-server"} <= {process.name() for process in started}

    os.kill(serve.pid, signal.SIGKILL)
    serve.wait(timeout=10)
    # the kernel signals each child as its parent dies: Postgres, Redis and the worker stop on their own
    assert wait_until(lambda: _gone(started), until=lambda alive: alive == [], timeout=60, what="no orphans") == []

    assert (postgres_dir(data_dir) / "postmaster.pid").exists() is False  # a fast shutdown removed it

    url, serve = _serve(data_dir, "second.log")
    try:
        # the key made on the first start still works: the data was found again; no second first key
        assert httpx.get(f"{url}/v1/detect", headers=headers, timeout=10).status_code == 200
        assert "first API key" not in (tmp_path / "second.log").read_text()
    finally:
        started = descendants(serve.pid)
        serve.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert serve.wait(timeout=60) == 130  # 128 + SIGINT, as after any Ctrl-C
    assert _gone(started) == []


def test_stale_pid_and_socket_files_of_a_dead_stack_are_cleared(tmp_path) -> None:
    data_dir = tmp_path / "data"
    url, serve = _serve(data_dir, "first.log", launcher=tuple(AS_BACKGROUND_JOB))
    serve.send_signal(signal.SIGINT)
    assert serve.wait(timeout=60) == 130  # as after Ctrl-C, also when started with SIGINT ignored
    # what a machine that lost power leaves: pid files naming processes that no longer run, and sockets
    dead_pid = _a_dead_pid()
    (postgres_dir(data_dir) / "postmaster.pid").write_text(f"{dead_pid}\n{postgres_dir(data_dir)}\n")
    (redis_dir(data_dir) / "redis.pid").write_text(f"{dead_pid}\n")
    redis_socket(data_dir).write_text("")
    url, serve = _serve(data_dir, "second.log")
    try:
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 130  # 128 + SIGINT, as after any Ctrl-C


def test_a_second_serve_on_the_same_data_dir_is_refused(tmp_path) -> None:
    data_dir = tmp_path / "data"
    _, serve = _serve(data_dir, "first.log")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACEQUEUE_")}
        second = subprocess.run(
            [sys.executable, "-m", "facequeue", "serve", "--port", "1"],
            env={**env, "FACEQUEUE_DATA_DIR": str(data_dir)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 130  # 128 + SIGINT, as after any Ctrl-C
    assert second.returncode == 1
    assert second.stderr.replace("\n", "") == (
        f"error: another `facequeue serve` (pid {serve.pid}) uses {data_dir}: stop it first, or give this one its "
        "own FACEQUEUE_DATA_DIR"
    )


def _a_dead_pid() -> int:
    pid = 2**22 - 1
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


def test_servers_a_killed_serve_left_running_are_stopped_by_the_next_one(tmp_path) -> None:
    """Where no parent-death signal exists (macOS), a kill -9 of serve leaves its servers running: the next serve
    on that data dir stops them and starts its own, instead of refusing or sharing them."""
    from facequeue.cli.embedded_stack import start_postgres

    data_dir = tmp_path / "data"
    left_behind = start_postgres(Settings(data_dir=data_dir, database_url=None))
    try:
        _, serve = _serve(data_dir, "serve.log")
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 130
        assert left_behind.process.wait(timeout=30) == 0  # a fast shutdown, asked by the new serve
    finally:
        left_behind.stop()
