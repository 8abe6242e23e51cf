"""Where the embedded Postgres and Redis that `facequeue serve` starts keep their data and Unix sockets, all
inside FACEQUEUE_DATA_DIR: the CLI starts them there (facequeue/cli/embedded_stack.py), and the settings point
the default database and broker URLs at these sockets."""

from __future__ import annotations

import hashlib
from pathlib import Path

POSTGRES_SOCKET_NAME = ".s.PGSQL.5432"
MAX_SOCKET_PATH = 100  # below macOS's 103 bytes for a Unix socket's path, and Linux's 107


def postgres_dir(data_dir: Path) -> Path:
    return (data_dir / "postgres").resolve()


def redis_dir(data_dir: Path) -> Path:
    return (data_dir / "redis").resolve()


def socket_dir(data_dir: Path) -> Path:
    """Where the embedded servers' Unix sockets are: <data_dir>/run, or a folder in /tmp named by a hash of
    data_dir when that path is too long for a socket's name (107 bytes on Linux, 103 on macOS)."""
    data_dir = data_dir.resolve()
    run = data_dir / "run"
    if len(str(run / POSTGRES_SOCKET_NAME)) <= MAX_SOCKET_PATH:
        return run
    return Path("/tmp") / f"facequeue-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]}"


def redis_socket(data_dir: Path) -> Path:
    return socket_dir(data_dir) / "redis.sock"
