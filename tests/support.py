"""Helpers the tests share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def _redis_db() -> int:
    """Each xdist process its own Redis database (gw0: 15, gw1: 14, ...; no xdist: 15), so no count or scan
    of one process ever sees another's keys; pub/sub ignores databases, hence the key prefix as well."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 15 - int(worker.removeprefix("gw")) % 12


REDIS_URL = f"{os.environ.get('FACEQUEUE_TEST_REDIS', 'redis://127.0.0.1:6379')}/{_redis_db()}"
# every Redis key and channel facequeue makes starts with it: two suites on one machine share nothing
BROKER_KEY_PREFIX = f"facequeue-test-{os.getpid()}:"


def queue_key(queue: str) -> str:
    """The Redis list behind a Celery queue in this test run."""
    return BROKER_KEY_PREFIX + queue


FINAL_STATUSES = {"succeeded", "failed", "canceled"}


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    until: Callable[[T], object] = bool,
    interval: float = 0.05,
) -> T:
    """Call `probe` until `until(result)` holds (by default: the result is truthy) and return that result.
    Past `timeout` seconds it raises TimeoutError naming `what` and the last result, so a failure says what
    it waited for and what it saw instead."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if until(seen):
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true after {timeout}s; last seen: {seen!r}")
        time.sleep(interval)


def wait_for_final(client, task_id: str, timeout: float = 60) -> dict:
    return wait_until(
        lambda: client.get(f"/v1/detect/{task_id}").json(),
        until=lambda task: task["status"] in FINAL_STATUSES,
        timeout=timeout,
        what=f"task {task_id} final",
        interval=0.1,
    )


def free_port() -> int:
    """A port nothing listens on right now (for a server to bind, or a connection to be refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def start_server(
    command: Callable[[int], list[str]],
    log_path: Path,
    env: Mapping[str, str],
    *,
    ready_path: str | None = "/healthz",
    cwd: Path = REPO_ROOT,
    stderr_path: Path | None = None,
    new_session: bool = False,
    timeout: float = 60,
) -> tuple[str, subprocess.Popen]:
    """Run `command(port)` (a server on 127.0.0.1:port) in `cwd` with the environment `env`, its output in
    `log_path` (stderr in `stderr_path` if given): (base URL, process) once it listens and `ready_path` answers
    200 (None: listening is enough). `new_session`: a process group of its own, which os.killpg ends with its
    children. A free port can be taken by someone else before the server binds it (any outgoing connection may
    get it): the server is then started again on another, up to three times."""
    for _ in range(3):
        port = free_port()
        errors = stderr_path.open("wb") if stderr_path else nullcontext(subprocess.STDOUT)
        with log_path.open("wb") as out, errors as err:
            process = subprocess.Popen(
                command(port), cwd=cwd, env=dict(env), stdout=out, stderr=err, start_new_session=new_session
            )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(
                lambda process=process, port=port: process.poll() is not None or _serving(process, port, ready_path),
                timeout=timeout,
                what=f"the server on port {port} answers {ready_path or 'connections'}",
                interval=0.1,
            )
        except TimeoutError:
            _kill(process, new_session)
            break
        if process.poll() is None:
            return base, process
        if not port_taken(port):
            break
    output = "\n".join(path.read_text(errors="replace") for path in dict.fromkeys((log_path, stderr_path or log_path)))
    raise RuntimeError(f"the server did not start:\n{output}")


def _kill(process: subprocess.Popen, new_session: bool) -> None:
    if new_session:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait(timeout=15)


def _serving(process: subprocess.Popen, port: int, ready_path: str | None) -> bool:
    """Whether `process` (or a child of it) listens on `port` and `ready_path` answers 200 there: another
    suite's server on a port taken meanwhile must not pass for ours."""
    try:
        ours = psutil.Process(process.pid)
        sockets = [sock for proc in (ours, *ours.children(recursive=True)) for sock in proc.net_connections("tcp")]
        if not any(sock.status == psutil.CONN_LISTEN and sock.laddr.port == port for sock in sockets):
            return False
        return ready_path is None or httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200
    except (psutil.NoSuchProcess, httpx.TransportError):
        return False


@contextmanager
def api_process(log_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`uvicorn api.app:create_app` in a process of its own, with `env` over this process's environment:
    (base URL, process) once /healthz answers; terminated on exit."""
    base, process = start_server(
        lambda port: [*UVICORN_API, "--port", str(port), "--log-level", "warning"], log_path, {**os.environ, **env}
    )
    try:
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=15)


UVICORN_API = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]


@contextmanager
def app_in_thread(app: object, name: str) -> Iterator[str]:
    """`app` served by uvicorn in a thread of this process: its base URL once it accepts connections. The socket
    is bound to a port of the kernel's choosing before uvicorn starts, so no other process can take it between."""
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: server.started or not thread.is_alive(), timeout=30, what=f"{name} started under uvicorn"
            )
            assert server.started, f"{name} did not start under uvicorn"
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            server.should_exit = True
            thread.join(timeout=15)


def create_api_key(data_dir: Path, tenant: str) -> str:
    """A key of `tenant`, made as an operator does: `facequeue keys create` on the service's data dir (it
    prints the key last)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
    created = subprocess.run(
        [sys.executable, "-m", "facequeue", "keys", "create", "--tenant", tenant],
        cwd=REPO_ROOT,
        env={**env, "FACEQUEUE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return created.stdout.split()[-1]
