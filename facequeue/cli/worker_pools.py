"""The two pools of `facequeue worker`: detection on a prefork pool in the worker's own process (one task per
core: CPU-bound), and downloads on a threads pool in a child process (many tasks at once, each mostly waiting on
a server), so a slow server never holds a CPU slot (workers/fetch_stage.py). Either pool can also run alone
(`--pools cpu`, `--pools fetch`), to scale them apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from enum import StrEnum

import structlog

from facequeue.core.enums import Queue
from facequeue.core.settings import Settings

log = structlog.get_logger(__name__)

CHILD_STOP_TIMEOUT = 30.0  # seconds the fetch pool gets to finish its downloads once the worker stops
RESTART_PAUSE = 1.0  # seconds before a fetch pool that exited is started again
PARENT_CHECK_SECONDS = 1.0


class Pools(StrEnum):
    BOTH = "both"
    CPU = "cpu"
    FETCH = "fetch"


def fetch_node_name(name: str) -> str:
    """The fetch pool's Celery node name: never its CPU worker's, since a worker that starts under a name
    re-queues the runs its predecessor of that name held (workers/lost_runs.py)."""
    return f"fetch-{name}"


def celery_argv(pool: Pools, concurrency: int, queues: str, name: str, quiet: bool, settings: Settings) -> list[str]:
    """`celery worker` arguments for the CPU pool (prefork) or the fetch pool (threads, on Queue.FETCH)."""
    fetch = pool == Pools.FETCH
    return [
        *(["--quiet"] if quiet or settings.log_format == "json" else []),  # no banner (plain text in JSON logs)
        "worker",
        f"--loglevel={settings.log_level}",
        f"--concurrency={concurrency}",
        f"--queues={Queue.FETCH.value if fetch else queues}",
        f"--hostname={fetch_node_name(name) if fetch else name}",
        f"--pool={'threads' if fetch else 'prefork'}",
        "--without-gossip",
        "--without-mingle",
    ]


class FetchPoolChild:
    """The fetch pool of a `--pools both` worker, started again when it dies (a crash, a kill). It stays in the worker's
    process group (a kill of the group ends it too) and writes its metrics to the worker's folder, which the
    worker's exporter adds up; it leaves the port to that exporter."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.command = [sys.executable, "-m", "facequeue", "worker", "--pools", Pools.FETCH.value, "--name", name]
        self.command += ["--child-of", str(os.getpid()), *(["--quiet"] if quiet else [])]
        self.env = {**os.environ, "FACEQUEUE_WORKER_METRICS_PORT": "0"}
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() never misses a process started at the same moment
        self._thread = threading.Thread(target=self._keep_running, name="fetch-pool", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _keep_running(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = subprocess.Popen(self.command, env=self.env)
            code = self.process.wait()
            if code == 0 or self._stopping.is_set():
                return  # it was stopped (SIGTERM to the worker's group reaches it first): not a failure
            log.error("fetch_pool_exited", code=code, action="starting it again")
            self._stopping.wait(RESTART_PAUSE)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # warm shutdown: downloads under way finish first
        try:
            process.wait(timeout=CHILD_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("fetch_pool_killed", timeout=CHILD_STOP_TIMEOUT)  # its runs are recovered like any lost run
            process.kill()
            process.wait()


def exit_with_parent(parent_pid: int) -> None:
    """Shut this fetch pool down (warm, as SIGTERM does) once the worker that started it is gone, so a worker
    killed on its own leaves no pool behind."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
