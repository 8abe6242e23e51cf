"""One real HTTP server for the fake upstreams; each test gets its own base path on it, so its own upstream URL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from facequeue.cli.demo import astronaut_bgr
from facequeue.core.settings import Settings
from tests.support import free_port
from tests.upstream.fake_upstreams import AKOOL_PATH, API_KEY, AkoolDetect, FakeUpstream
from workers.detectors.upstream.akool import AkoolUpstream

_prefixes = itertools.count()


@dataclass
class Upstream:
    """The test's upstream: a base path of its own on the shared server.

    A new URL is a new upstream to routing, which keeps one circuit breaker per upstream per process, so no
    test inherits another's breaker; it also checks that a base URL with a path prefix is joined correctly.
    """

    server: HTTPServer
    prefix: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}{self.prefix}"

    def url_for(self, path: str) -> str:
        return self.url + path

    def serve(self, path: str, handler: Callable[[Request], Response], method: str = "POST") -> None:
        self.server.expect_request(self.prefix + path, method=method).respond_with_handler(handler)


@pytest.fixture(scope="session")
def _server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)  # a slow handler blocks no other request
    server.start()
    yield server
    server.stop()


@pytest.fixture
def upstream(_server: HTTPServer) -> Iterator[Upstream]:
    _server.clear()
    yield Upstream(_server, f"/upstream-{next(_prefixes)}")
    _server.clear()


@pytest.fixture
def make_settings(upstream: Upstream) -> Callable[..., Settings]:
    """Settings for the test's upstream, independent of the environment; overrides as keyword arguments."""

    def make(**overrides: object) -> Settings:
        values = dict(
            upstream_protocol="akool",
            upstream_url=upstream.url,
            upstream_api_key=API_KEY,
            upstream_connect_timeout=1.0,
            upstream_read_timeout=2.0,
            upstream_max_attempts=3,
            upstream_breaker_failures=3,
            upstream_breaker_reset=30.0,
            disabled_features=[],
        )
        return Settings(_env_file=None, **{**values, **overrides})

    return make


@pytest.fixture
def sleeps() -> list[float]:
    """Waits the retry loop asked for; pass `sleeps.append` as an adapter's sleep to skip the real waiting."""
    return []


@pytest.fixture
def astronaut() -> np.ndarray:
    return astronaut_bgr()


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    return free_port()


@pytest.fixture
def fake(upstream: Upstream) -> FakeUpstream:
    """A healthy Akool upstream that records its requests and can be told to fail."""
    fake = FakeUpstream(AkoolDetect())
    upstream.serve(AKOOL_PATH, fake)
    return fake


@pytest.fixture
def akool(make_settings: Callable[..., Settings], sleeps: list[float]) -> Iterator[AkoolUpstream]:
    adapter = AkoolUpstream(make_settings(), sleep=sleeps.append)
    yield adapter
    adapter.close()
