"""The service under load: `facequeue serve` (embedded: the Postgres and Redis it starts) or `facequeue api` +
`facequeue worker` on a scratch Postgres database and Redis, as subprocesses; submitting tasks and reading their
fate from the database. The distributed form's Postgres is the wheel's PostgreSQL 16 with pgvector (as serve's),
started for each start of the form on a Unix socket in its folder, or the server FACEQUEUE_BENCH_PG_ADMIN names
(an admin DSN; it then needs pgvector).

Every process started here gets its own session and is ended by its process group id; the scratch database
and Redis keys are dropped afterwards.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
from sqlalchemy import Engine, create_engine, func, select

from bench.data import REPO_ROOT
from db.models import DetectTask
from facequeue.cli.embedded_stack import start_postgres_in
from facequeue.core.embedded_paths import socket_dir
from facequeue.core.enums import FINAL_STATUSES
from facequeue.core.settings import Settings

PG_ADMIN_DSN = os.environ.get("FACEQUEUE_BENCH_PG_ADMIN")  # unset: the wheel's Postgres, started for the form
REDIS_URL = os.environ.get("FACEQUEUE_BENCH_REDIS", "redis://127.0.0.1:6379/14")
WORKER_CONCURRENCY = 2
API_PROCESSES = 2  # distributed form, as deploy/ runs it; the embedded `serve` has one
START_TIMEOUT = 90.0
STALL_TIMEOUT = 120.0  # waiting for tasks ends when none has finished for this long
FORMS = ("embedded", "distributed")


@dataclass
class Service:
    form: str  # "embedded" or "distributed"
    base_url: str
    database_url: str
    log_path: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def worker_pool(self) -> list[psutil.Process]:
        """The Celery pool processes that detect (children of the worker's main process)."""
        return [child for child in self._worker_children() if not _is_fetch_pool(child)]

    def fetch_pool(self) -> list[psutil.Process]:
        """The worker's fetch pool: one child process whose threads download media."""
        return [child for child in self._worker_children() if _is_fetch_pool(child)]

    def _worker_children(self) -> list[psutil.Process]:
        main = self._worker_main()
        return main.children() if main else []

    @contextmanager
    def workers_paused(self) -> Iterator[None]:
        """The worker (main and pool processes) stopped with SIGSTOP for the block: the API runs alone."""
        main = self._worker_main()
        processes = [main, *main.children(recursive=True)] if main else []
        for process in processes:
            process.suspend()
        try:
            yield
        finally:
            for process in processes:
                process.resume()

    def worker_alive(self) -> bool:
        return self._worker_main() is not None

    def failures(self) -> list[str]:
        """The service's own reports of fatal errors (e.g. a worker that died), from its log."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line.strip() for line in lines if "CRITICAL" in line or "Unrecoverable" in line]

    def _worker_main(self) -> psutil.Process | None:
        for root in self.processes:
            try:
                tree = [psutil.Process(root.pid), *psutil.Process(root.pid).children(recursive=True)]
                for process in tree:
                    if (
                        process.status() != psutil.STATUS_ZOMBIE
                        and _is_worker(process)
                        and not _is_worker(process.parent())
                    ):
                        return process
            except psutil.NoSuchProcess:
                continue
        return None

    def final_counts(self, since: datetime) -> Counter[str]:
        """Tasks created since ``since`` by status, read from the database."""
        query = select(DetectTask.status, func.count()).where(DetectTask.created_at >= since)
        with _engine(self.database_url).connect() as connection:
            return Counter(dict(connection.execute(query.group_by(DetectTask.status)).all()))

    def wait_final(self, since: datetime, expected: int, stall_timeout: float = STALL_TIMEOUT) -> Counter[str]:
        """Poll the database until ``expected`` tasks created since ``since`` are final; give up when the
        worker is gone or no task has become final for ``stall_timeout`` seconds."""
        final, last_progress = -1, time.monotonic()
        while True:
            counts = self.final_counts(since)
            done = sum(counts[status] for status in FINAL_STATUSES)
            if done >= expected or not self.worker_alive() or time.monotonic() - last_progress > stall_timeout:
                return counts
            if done > final:
                final, last_progress = done, time.monotonic()
            time.sleep(0.25)

    def span_seconds(self, since: datetime) -> float:
        """From the first task created to the last finished, since ``since`` (server clocks, not polling)."""
        query = select(func.min(DetectTask.created_at), func.max(DetectTask.finished_at))
        with _engine(self.database_url).connect() as connection:
            first, last = connection.execute(query.where(DetectTask.created_at >= since)).one()
        return (_aware(last) - _aware(first)).total_seconds() if first and last else float("nan")

    def worker_timings(self, since: datetime) -> list[dict[str, float]]:
        query = select(DetectTask.timings).where(DetectTask.created_at >= since)
        with _engine(self.database_url).connect() as connection:
            return [dict(timings or {}) for timings in connection.execute(query).scalars()]


def distributed_unavailable() -> str | None:
    """Why the Postgres + Redis form cannot run here, or None (its Postgres is started, or named, see above)."""
    return None if _reachable("127.0.0.1", 6379) else "Redis not reachable on 127.0.0.1:6379"


def split_cpus() -> tuple[set[int], set[int]]:
    """The first CPU this process may use for the benchmark's driver (a load generator), the rest for the
    service (all of them on a one-CPU machine)."""
    cpus = sorted(os.sched_getaffinity(0))
    return {cpus[0]}, set(cpus[1:]) or {cpus[0]}


@contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """This process on `cpus` meanwhile (sched_setaffinity, as `taskset` does)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def running(
    form: str,
    workdir: Path,
    cpus: set[int] | None = None,
    settings: dict[str, str] | None = None,
    redis_url: str = REDIS_URL,
) -> Iterator[Service]:
    """The service in ``form``, with a fresh data folder (and log) under ``workdir`` for each start; every process
    of it (the servers `serve` starts included) on ``cpus`` when given; FACEQUEUE_ ``settings`` added to its
    environment; the distributed form's broker at ``redis_url``."""
    folder = Path(tempfile.mkdtemp(prefix=f"{form}-", dir=workdir))
    if form == "embedded":
        starter = _embedded(folder, cpus, settings or {})
    else:
        starter = _distributed(folder, cpus, settings or {}, redis_url)
    with starter as service:
        yield service


@contextmanager
def _embedded(workdir: Path, cpus: set[int] | None, settings: dict[str, str]) -> Iterator[Service]:
    """`facequeue serve` with no URLs: the Postgres and Redis it starts in its data dir."""
    port = free_port()
    database_url = Settings(data_dir=workdir, database_url=None).resolved_database_url  # not a URL from the environment
    service = Service("embedded", f"http://127.0.0.1:{port}", database_url, workdir / "log")
    env = _service_env(FACEQUEUE_DATA_DIR=str(workdir), **settings)
    with _log(service) as log:
        service.processes.append(_spawn(["serve", "--port", str(port)], env, log, workdir, cpus))
        try:
            _wait_ready(service)
            yield service
        finally:
            _engine(database_url).dispose()  # its server stops with serve
            _stop(service.processes)


@contextmanager
def _distributed(workdir: Path, cpus: set[int] | None, settings: dict[str, str], redis_url: str) -> Iterator[Service]:
    with (
        private_postgres(workdir / "pg", cpus) as admin_dsn,
        _api_and_worker(admin_dsn, workdir, cpus, settings, redis_url) as service,
    ):
        yield service


@contextmanager
def private_postgres(home: Path, cpus: set[int] | None) -> Iterator[str]:
    """The admin DSN of FACEQUEUE_BENCH_PG_ADMIN's server, or of the wheel's Postgres started in ``home`` (on
    ``cpus``, as the service's other processes) for the block."""
    if PG_ADMIN_DSN:
        yield PG_ADMIN_DSN
        return
    with pinned(cpus) if cpus else nullcontext():
        server = start_postgres_in(home)
    try:
        yield f"postgresql://postgres@/postgres?host={socket_dir(home)}"
    finally:
        server.stop()
        shutil.rmtree(socket_dir(home), ignore_errors=True)  # in /tmp when home's path is too long for a socket


@contextmanager
def _api_and_worker(
    admin_dsn: str, workdir: Path, cpus: set[int] | None, settings: dict[str, str], redis_url: str
) -> Iterator[Service]:
    import psycopg
    import redis

    name = f"facequeue_bench_{os.getpid()}"
    prefix = f"facequeue-bench-{os.getpid()}:"
    database_url = urlunsplit(urlsplit(admin_dsn)._replace(scheme="postgresql+psycopg", path=f"/{name}"))
    port = free_port()
    service = Service("distributed", f"http://127.0.0.1:{port}", database_url, workdir / "log")
    env = _service_env(
        FACEQUEUE_DATA_DIR=str(workdir),
        FACEQUEUE_DATABASE_URL=database_url,
        FACEQUEUE_BROKER_URL=redis_url,
        FACEQUEUE_BROKER_KEY_PREFIX=prefix,
        **settings,
    )
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with _log(service) as log:
            subprocess.run(
                [sys.executable, "-m", "facequeue", "migrate"],
                env=env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=log,
                check=True,
            )
            service.processes.append(
                _spawn(["api", "--port", str(port), "--workers", str(API_PROCESSES)], env, log, REPO_ROOT, cpus)
            )
            service.processes.append(
                _spawn(
                    ["worker", "--concurrency", str(WORKER_CONCURRENCY), "--name", "bench@%h"],
                    env,
                    log,
                    REPO_ROOT,
                    cpus,
                )
            )
            try:
                _wait_ready(service)
                yield service
            finally:
                _stop(service.processes)
    finally:
        _engine(database_url).dispose()  # release pooled connections before the drop
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)


def _service_env(**settings: str) -> dict[str, str]:
    # The caller's FACEQUEUE_ settings (e.g. a test run's database) must not leak into the service.
    env = {key: value for key, value in os.environ.items() if not key.startswith("FACEQUEUE_")}
    env.update(
        FACEQUEUE_AUTH="off",  # measures the service, not key look-ups or the per-key rate limit
        FACEQUEUE_WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
        FACEQUEUE_LOG_LEVEL="WARNING",
        **settings,
    )
    return env


@contextmanager
def _log(service: Service) -> Iterator:
    with service.log_path.open("ab") as log:
        yield log


def _spawn(arguments: list[str], env: dict[str, str], log, cwd: Path, cpus: set[int] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "facequeue", *arguments],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it reaches the worker pool too
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),  # what `taskset` does
    )


def _wait_ready(service: Service) -> None:
    """The API answers /readyz and a first task has gone all the way through (models loaded in a worker)."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(base_url=service.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if any(process.poll() is not None for process in service.processes):
                raise RuntimeError(f"{service.form} service exited early:\n{service.log_path.read_text()[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise TimeoutError(f"{service.form} service not ready:\n{service.log_path.read_text()[-3000:]}")
    warm_up(service)


def warm_up(service: Service, tasks: int = 2 * WORKER_CONCURRENCY) -> None:
    """Run a few tiny tasks so every pool process has loaded its models before anything is timed."""
    since = now()
    submit_all(service.base_url, [tiny_task_body()] * tasks)
    counts = service.wait_final(since, tasks)
    if counts["succeeded"] < tasks:
        raise RuntimeError(f"{service.form} warm-up tasks did not succeed: {dict(counts)}")


def _stop(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM each process we started (a Celery main stops its own pool), then SIGKILL what is left of
    their process groups: a worker whose parent gave up waiting must not outlive the benchmark."""
    for process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # the whole group is gone already
        process.wait(timeout=10)


@dataclass(frozen=True)
class Submitted:
    task_id: str | None  # None: not accepted
    status_code: int
    latency_s: float


def submit_all(base_url: str, bodies: Sequence[dict], threads: int = 8) -> list[Submitted]:
    """POST every body to /v1/detect as fast as ``threads`` clients can."""
    with ThreadPoolExecutor(threads) as pool, _clients(base_url, threads) as clients:
        return list(pool.map(lambda item: submit(clients[item[0] % threads], item[1]), enumerate(bodies)))


@contextmanager
def _clients(base_url: str, count: int) -> Iterator[list[httpx.Client]]:
    clients = [httpx.Client(base_url=base_url, timeout=60) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            client.close()


def submit(client: httpx.Client, body: dict, started: float | None = None) -> Submitted:
    """One submit; latency counts from ``started`` (the planned send time under open-loop load) if given."""
    started = time.perf_counter() if started is None else started
    try:
        response = client.post("/v1/detect", json=body)
    except httpx.HTTPError:
        return Submitted(None, 0, time.perf_counter() - started)
    task_id = response.json().get("detect_task_id") if response.status_code == 202 else None
    return Submitted(task_id, response.status_code, time.perf_counter() - started)


def image_body(path: Path) -> dict:
    return {"img": base64.b64encode(path.read_bytes()).decode()}


def tiny_task_body() -> dict:
    """A small real face (the astronaut's head, 96 px, JPEG): the cheapest task that still detects a face."""
    import cv2

    from facequeue.cli.demo import astronaut_head

    jpeg = cv2.imencode(".jpg", astronaut_head(96))[1].tobytes()
    return {"img": base64.b64encode(jpeg).decode()}


def now() -> datetime:
    return datetime.now(UTC)


def running_forms(
    forms: Sequence[str], workdir: Path, notes: list[str], cpus: set[int] | None = None
) -> Iterator[tuple[str, Service]]:
    """Each requested form that can run here, started (on ``cpus`` when given); what it could not do, and what it
    logged, goes to notes."""
    for form in forms:
        reason = distributed_unavailable() if form == "distributed" else None
        if reason:
            notes.append(f"{form} form not run: {reason}")
            continue
        with running(form, workdir, cpus) as service:
            yield form, service
            notes.extend(f"{form}: the service logged: {line}" for line in service.failures())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@cache
def _engine(url: str) -> Engine:
    return create_engine(url)


def _is_worker(process: psutil.Process | None) -> bool:
    # the `worker` command itself (a whole argument: `api --workers 2` is not one)
    return process is not None and "worker" in process.cmdline()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def _is_fetch_pool(process: psutil.Process) -> bool:
    return "--pools" in process.cmdline()  # facequeue/cli/worker_pools.py starts it as `worker --pools fetch`
