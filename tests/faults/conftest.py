"""Fault injection on a private Postgres and Redis (spare ports, temporary directories, this suite's own
processes; the shared servers on 5432/6379 are never touched), with facequeue's API and worker run as
real processes by the `facequeue` command. Every test module is marked `faults`; they run only when `-m` names
it (`make test-faults`, about 10 minutes), so `make test` leaves them out."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from skimage import data

from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.faults.stack import FaultStack

# Every recovery time measured in this run, printed at the end whether the tests pass or fail.
MEASUREMENTS: list[tuple[str, str]] = []

# The video a kill lands in: long enough to be mid-task (100 frames at 1280x720 take seconds to detect).
VIDEO_FRAMES = 120
VIDEO_SIZE = (1280, 720)
ASTRONAUT_HEAD = (slice(30, 210), slice(150, 300))  # rows, columns of the one face in scikit-image's astronaut


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "faults" in (config.option.markexpr or ""):
        return
    faults = [item for item in items if "faults" in item.keywords]
    if faults:
        config.hook.pytest_deselected(items=faults)
        items[:] = [item for item in items if "faults" not in item.keywords]


def pytest_terminal_summary(terminalreporter) -> None:
    if MEASUREMENTS:
        terminalreporter.section("fault recovery (measured)")
        for test, line in MEASUREMENTS:
            terminalreporter.write_line(f"{test}: {line}")


@pytest.fixture
def measure(request: pytest.FixtureRequest):
    """Record one measured line for the run's summary, and print it with the test's output."""

    def record(line: str) -> None:
        print(line)
        MEASUREMENTS.append((request.node.name, line))

    return record


@pytest.fixture(scope="package")
def sigterm_tears_down() -> Iterator[None]:
    """SIGTERM (`timeout`, a CI runner) ends the run like Ctrl-C, so pytest still tears the fixtures down: the
    private servers run in sessions of their own and would otherwise outlive it."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="package")
def private_postgres(tmp_path_factory: pytest.TempPathFactory, sigterm_tears_down: None) -> Iterator[PrivatePostgres]:
    postgres = PrivatePostgres(tmp_path_factory.mktemp("postgres-log"))
    try:
        postgres.start()
        yield postgres
    finally:
        postgres.destroy()


@pytest.fixture(scope="package")
def private_redis(tmp_path_factory: pytest.TempPathFactory, sigterm_tears_down: None) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        redis.start()
        yield redis
    finally:
        redis.destroy()


@dataclass(frozen=True)
class Media:
    face_url: str  # a JPEG of one real face
    video_url: str  # VIDEO_FRAMES frames of one face moving across the frame

    def image_task(self) -> dict:
        return {"url": self.face_url, "media_type": "image"}

    def video_task(self) -> dict:
        return {"url": self.video_url, "media_type": "video", "num_frames": 100}


@pytest.fixture(scope="package")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Media]:
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = cv2.imencode(".jpg", astronaut)[1].tobytes()
    video = moving_face_video(tmp_path_factory.mktemp("media") / "clip.mp4", astronaut[ASTRONAUT_HEAD])
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request("/face.jpg").respond_with_data(face, content_type="image/jpeg")
    server.expect_request("/clip.mp4").respond_with_data(video.read_bytes(), content_type="video/mp4")
    server.start()
    try:
        yield Media(server.url_for("/face.jpg"), server.url_for("/clip.mp4"))
    finally:
        server.stop()


def moving_face_video(path: Path, head: np.ndarray) -> Path:
    """H.264 clip of VIDEO_FRAMES frames: the head slides left to right over a grey ramp (one face per frame)."""
    width, height = VIDEO_SIZE
    ramp = np.linspace(60, 190, width, dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(VIDEO_FRAMES):
            frame = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2)
            x = index * (width - head.shape[1]) // (VIDEO_FRAMES - 1)
            y = (height - head.shape[0]) // 2
            frame[y : y + head.shape[0], x : x + head.shape[1]] = head
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def webhook_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def stack(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, webhook_server: HTTPServer, tmp_path: Path
) -> Iterator[FaultStack]:
    """A fresh database and an empty Redis, then one API and one worker (2 pool processes) on them."""
    private_postgres.ensure_started()  # a failed test may have left them stopped
    private_redis.ensure_started()
    private_redis.client().flushall()
    stack = FaultStack(private_postgres, private_redis, tmp_path, webhook_server)
    try:
        stack.start_api()
        stack.start_worker()
        yield stack
    finally:
        private_postgres.ensure_started()
        stack.close()
