from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from facequeue.core.settings import Settings
from tests.media.numbered_video import NUMBERED_FORMATS, NUMBERED_FRAME_COUNT, write_numbered_video


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings independent of the environment's allow-list; overrides as keyword arguments."""

    def make(**overrides: object) -> Settings:
        return Settings(_env_file=None, **{"allowed_hosts": [], **overrides})

    return make


@pytest.fixture(scope="session")
def _threaded_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server(_threaded_server: HTTPServer) -> Iterator[HTTPServer]:
    """A threaded HTTP server on 127.0.0.1, so a deliberately slow handler blocks no other request."""
    _threaded_server.clear()
    yield _threaded_server
    _threaded_server.clear()


@pytest.fixture(scope="session")
def numbered_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("numbered")
    return {
        name: write_numbered_video(
            folder / f"{name}{suffix}",
            codec,
            NUMBERED_FRAME_COUNT,
            pix_fmt="rgb8" if codec == "gif" else "yuv420p",
            options=options,
        )
        for name, (suffix, codec, options) in NUMBERED_FORMATS.items()
    }


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 frames with a keyframe at least every 25 frames: sparse sampling should seek."""
    return write_numbered_video(tmp_path_factory.mktemp("long") / "long.mp4", "libx264", 600, gop_size=25)
