"""What the embedded default's servers cost: `facequeue serve` with no URLs starts PostgreSQL and Redis in its data
dir. Measured on a fresh data dir (the first start runs initdb) and again on the same one (warm):

* start: seconds from launching `serve` until /readyz answers 200 (migrated, a worker beating);
* memory: RSS and PSS of Postgres (the postmaster and its background processes) and of redis-server, read
  once the first start is ready and idle;
* disk: the data dir's size after that first start, before any task (Postgres's files, Redis's AOF).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.options import RunOptions
from bench.report import Section, Table
from bench.running_services import free_port

STARTS = 3  # warm starts timed after the first
READY_TIMEOUT = 180.0
MIB = 1024 * 1024


def run(options: RunOptions) -> Section:
    section = Section(
        "stack", "embedded stack: serve's start time, its servers' memory and disk", options.command("stack")
    )
    data_dir = Path(tempfile.mkdtemp(prefix="stack-", dir=options.workdir)) / "data"
    first, memory = _start(data_dir, read_memory=True)
    disk = _disk_mib(data_dir)
    warm = [_start(data_dir)[0] for _ in range(1 if options.quick else STARTS)]
    section.tables.append(
        Table(
            ["measure", "value"],
            [
                ["first start to /readyz (initdb included), s", f"{first:.1f}"],
                [f"warm start to /readyz, s (median of {len(warm)})", f"{sorted(warm)[len(warm) // 2]:.1f}"],
                *[[f"{name} RSS / PSS, MiB", f"{rss:.0f} / {pss:.0f}"] for name, (rss, pss) in memory.items()],
                ["data dir after the first start, MiB", f"{disk:.0f}"],
            ],
        )
    )
    section.notes.append(
        "start times include the API's and the worker's own start (models loaded once /readyz answers); "
        f"this machine has {os.cpu_count()} CPUs"
    )
    return section


def _start(data_dir: Path, read_memory: bool = False) -> tuple[float, dict[str, tuple[float, float]]]:
    """Seconds until serve's /readyz answered, and (when asked) its servers' memory; serve is stopped after."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("FACEQUEUE_")}
    env.update(FACEQUEUE_DATA_DIR=str(data_dir), FACEQUEUE_LOG_LEVEL="WARNING")
    log = data_dir.parent / "serve.log"
    started = time.perf_counter()
    with log.open("ab") as output:
        serve = subprocess.Popen(
            [sys.executable, "-m", "facequeue", "serve", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        seconds = _until_ready(f"http://127.0.0.1:{port}", serve, started, log)
        memory = _server_memory(serve.pid) if read_memory else {}
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=90)
    return seconds, memory


def _until_ready(base: str, serve: subprocess.Popen, started: float, log: Path) -> float:
    deadline = started + READY_TIMEOUT
    while time.perf_counter() < deadline:
        if serve.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"serve not ready in {READY_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def _server_memory(serve_pid: int) -> dict[str, tuple[float, float]]:
    """(RSS, PSS) in MiB of each server serve started, its own children counted in."""
    memory = {}
    for child in psutil.Process(serve_pid).children():
        if child.name() in ("postgres", "redis-server"):
            processes = [child, *child.children(recursive=True)]
            infos = [process.memory_full_info() for process in processes]
            memory[child.name()] = (sum(i.rss for i in infos) / MIB, sum(i.pss for i in infos) / MIB)
    return memory


def _disk_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink()) / MIB
