"""The worker that `facequeue serve` runs beside its API, kept alive: restarted when it dies, and stopped (warm
first, then killed with its pool processes) before the embedded servers it writes to."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import threading

from facequeue.cli.child_processes import die_with_parent
from facequeue.cli.console import announce

WORKER_STOP_TIMEOUT = 30.0


class WorkerSupervisor(threading.Thread):
    """Keeps the embedded worker running: a worker that dies (killed, out of memory, a crash) is started
    again, and the pool processes it left behind are killed; its tasks are recovered by the reaper like
    any lost worker's."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        super().__init__(name="worker-supervisor", daemon=True)
        self.command = command
        self.env = env
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # stop() never misses a worker started at the same moment

    def run(self) -> None:
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                # its own process group, so stop() can end the pool processes with it; a warm shutdown when serve
                # ends without stopping it (kill -9)
                self.process = subprocess.Popen(
                    self.command,
                    env=self.env,
                    start_new_session=True,
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            code = self.process.wait()
            if not self._stopping.is_set():
                _kill_group(self.process.pid)  # pool processes a killed worker left behind
                announce(
                    "worker_exited",
                    f"[bold red]worker exited with code {code}; starting a new one[/]",
                    level="error",
                    code=code,
                )
                self._stopping.wait(1)

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish first
            try:
                process.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                announce(
                    "worker_killed",
                    "[bold red]worker did not stop in time; killing it (the reaper re-runs its tasks)[/]",
                    level="error",
                    timeout=WORKER_STOP_TIMEOUT,
                )
        _kill_group(process.pid)  # whatever is left of it
        process.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
