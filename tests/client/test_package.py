"""facequeue-client stays a light, separate distribution."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import requires, version

import facequeue_client
from facequeue_client import PollPolicy, RetryPolicy
from facequeue_client._config import API_KEY_ENV, DEFAULT_TIMEOUT, SERVER_ENV

from tests.conftest import REPO_ROOT

SERVER_MODULES = {"cv2", "celery", "kombu", "sqlalchemy", "boto3", "numpy", "facequeue", "api", "db", "workers"}


def test_it_depends_only_on_httpx_standardwebhooks_and_pydantic() -> None:
    assert sorted(re.match(r"[\w.-]+", requirement)[0] for requirement in requires("facequeue-client")) == [
        "httpx",
        "pydantic",
        "standardwebhooks",
    ]
    assert version("facequeue-client") == facequeue_client.__version__


def test_importing_it_loads_nothing_of_the_server() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, facequeue_client; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd="/",  # not the repository, whose packages would otherwise be importable
    ).stdout.split()
    assert sorted(name for name in loaded if name.split(".")[0] in SERVER_MODULES) == []


def test_the_docs_state_the_clients_defaults() -> None:
    section = " ".join((REPO_ROOT / "docs" / "client.md").read_text().split())  # wrapped lines joined
    retry, poll, timeout = RetryPolicy(), PollPolicy(), DEFAULT_TIMEOUT
    for stated in (
        f"{retry.attempts} tries, a `Retry-After` over {retry.max_wait:g} s",
        f"{retry.backoff:g} s doubling",
        f"from {poll.first:g} s growing by {poll.growth:g} to {poll.longest:g} s",
        f"`httpx.Timeout({timeout.read:g}, connect={timeout.connect:g})`",
        f"defaults: {SERVER_ENV}, {API_KEY_ENV}",
    ):
        assert stated in section, stated
