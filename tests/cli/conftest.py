"""The CLI as its users run it: `python -m facequeue ...` in a process of its own (exit status, stdout and
stderr apart, the environment as a shell gives it), against a real embedded `facequeue serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import pytest

from facequeue.cli.demo import Placement, astronaut_bgr, compose
from tests.conftest import REPO_ROOT
from tests.test_embedded import embedded_server  # noqa: F401  (a `facequeue serve`, started once per module)


def clean_env(**extra: str) -> dict[str, str]:
    """This machine's environment without the test suite's FACEQUEUE_ settings (they point at Postgres)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
    return {**env, **extra}


def run_cli(
    *args: str, env: dict[str, str], cwd: Path = REPO_ROOT, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facequeue", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: nothing may wait for an answer
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a user error prints: exit status 1, nothing on stdout, and no traceback."""
    assert (done.returncode, done.stdout) == (1, ""), (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def server(embedded_server) -> tuple[str, Path]:  # noqa: F811
    """The embedded service's URL and data directory."""
    url, data_dir, _, _ = embedded_server
    return url, data_dir


@pytest.fixture
def cli_env(server: tuple[str, Path]) -> dict[str, str]:
    """FACEQUEUE_SERVER and FACEQUEUE_API_KEY of a tenant of this test's own, made with `facequeue keys create`."""
    url, data_dir = server
    created = run_cli(
        "keys", "create", "--tenant", f"cli-{uuid.uuid4().hex[:8]}", env=clean_env(FACEQUEUE_DATA_DIR=str(data_dir))
    )
    assert created.returncode == 0, created.stderr
    return clean_env(FACEQUEUE_SERVER=url, FACEQUEUE_API_KEY=created.stdout.strip())


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """JPEGs of real faces whose count is known: one, two (a mirrored copy reads as another person), none."""
    folder = tmp_path_factory.mktemp("photos")
    images = {
        "one": astronaut_bgr(),
        "two": compose(
            640, 360, [Placement(x=60, y=80, height=180), Placement(x=380, y=80, height=180, mirrored=True)]
        ),
        "none": compose(640, 360, []),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name}.jpg"
        cv2.imwrite(str(paths[name]), image)
    return paths


@pytest.fixture
def held_media(media_server, photos) -> Iterator[tuple[str, Callable[[], None]]]:
    """A URL whose download waits until the test calls `release()`: its task stays unfinished until then."""
    released = threading.Event()

    def respond(_request):
        from werkzeug import Response

        released.wait(timeout=60)
        return Response(photos["one"].read_bytes(), content_type="image/jpeg")

    media_server.expect_request("/held.jpg").respond_with_handler(respond)
    yield media_server.url_for("/held.jpg"), released.set
    released.set()
