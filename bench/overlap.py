"""Overlapping I/O with compute inside one task, each figure on and off in the same run.

* decode-ahead: a video task's frames (`detect_media`, the worker's own code) with FACEQUEUE_FRAME_PREFETCH
  0 (decode, then detect, one after the other) and 2 (the next frames decoded on a second thread);
* concurrent downloads: a task's `frame_urls` (the fetch stage's `fetch_all`) from a local HTTP server that answers each
  request after a fixed delay (a remote server's latency), with FACEQUEUE_FETCH_CONCURRENCY 1 and 4.
Both run in this process with a worker's settings (one OpenCV thread); the task's database writes are left
out (a no-op progress reporter), since they are the same either way.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import matplotlib.pyplot as plt

from bench.data import CLIP_1080P, CLIPS_720P, VIDEOS, labelled_images, require_testdata
from bench.options import RunOptions
from bench.report import Section, Table
from bench.video import LONG_CLIP_SECONDS, build_long_clip
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import Settings, get_settings
from workers.detectors.registry import get_detector
from workers.media.fetch import fetch_all, fetch_to_file
from workers.pinned_http import Deadline
from workers.pipeline import StageTimer, detect_media
from workers.runtimes import intra_op_threads

NUM_FRAMES = 100
PREFETCH_DEPTHS = (0, 2)
DOWNLOAD_DELAY_S = 0.1
FRAME_URLS = 8
FETCH_CONCURRENCY = (1, 4)
REPEATS = 3


def run(options: RunOptions) -> Section:
    require_testdata()
    cv2.setNumThreads(intra_op_threads(get_settings()))  # as in a worker's pool process
    get_detector()
    # the 1080p clip (one keyframe: sequential decode) and the 10-minute one (a seek per sample, built by (b))
    clips = (
        [VIDEOS / CLIPS_720P[0]]
        if options.quick
        else [VIDEOS / CLIP_1080P, build_long_clip(options.cache_dir, LONG_CLIP_SECONDS)]
    )
    repeats = 1 if options.quick else REPEATS
    section = Section("overlap", "overlapping I/O with compute inside a task", options.command("overlap"))
    rows = [_video_row(clip, 10 if options.quick else NUM_FRAMES, repeats) for clip in clips]
    section.tables.append(
        Table(
            ["clip", "frames", "prefetch 0 s", "prefetch 2 s", "speed-up", "detect waited on decode s (prefetch 2)"],
            rows,
            f"a video task's frames through detect_media, median of {repeats}",
        )
    )
    downloads = _download_rows(repeats)
    section.tables.append(
        Table(
            ["frame_urls", "delay per response s", "concurrency", "download s", "speed-up"],
            downloads,
            f"fetch_all for {FRAME_URLS} frame_urls from a local server answering after {DOWNLOAD_DELAY_S} s",
        )
    )
    section.figures["speedups"] = _plot(rows, downloads)
    return section


def _video_row(clip: Path, num_frames: int, repeats: int) -> list[object]:
    options = DetectOptions(num_frames=num_frames)
    seconds, waits = {}, {}
    for depth in PREFETCH_DEPTHS:
        settings = get_settings().model_copy(update={"frame_prefetch": depth})
        runs = [_detect_video(clip, options, settings) for _ in range(repeats)]
        seconds[depth] = statistics.median(total for total, _ in runs)
        waits[depth] = statistics.median(wait for _, wait in runs)
    first, last = PREFETCH_DEPTHS
    return [clip.name, num_frames, seconds[first], seconds[last], seconds[first] / seconds[last], waits[last]]


def _detect_video(clip: Path, options: DetectOptions, settings: Settings) -> tuple[float, float]:
    timer = StageTimer()
    started = time.perf_counter()
    detect_media("bench", [clip], (), options, settings, _Unmonitored(), timer)
    return time.perf_counter() - started, timer.timings.get("decode", 0.0)


class _Unmonitored:
    """Stands in for a run's RunControl: no task row to write progress to."""

    def report(self, **_values: object) -> None:
        pass

    def check(self) -> None:
        pass

    def pay_for(self, _cost: int, _what: str) -> None:
        pass  # no tenant to charge


def _download_rows(repeats: int) -> list[list[object]]:
    image = next(image.path for image in labelled_images()).read_bytes()
    with _delayed_server(image, DOWNLOAD_DELAY_S) as base_url:
        urls = tuple(f"{base_url}/frame-{i}.jpg" for i in range(FRAME_URLS))
        timings = {}
        for concurrency in FETCH_CONCURRENCY:
            settings = Settings(fetch_concurrency=concurrency, allowed_hosts="127.0.0.1/32")
            timings[concurrency] = statistics.median(_timed(partial(_download, urls, settings)) for _ in range(repeats))
    slowest = timings[FETCH_CONCURRENCY[0]]
    return [[FRAME_URLS, DOWNLOAD_DELAY_S, c, timings[c], slowest / timings[c]] for c in FETCH_CONCURRENCY]


def _download(urls: tuple[str, ...], settings: Settings) -> None:
    # what the fetch stage does with a task's frame_urls (workers/fetch_stage.py)
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as workdir:

        def fetch(position: int, url: str) -> Path:
            folder = Path(workdir, f"input-{position}")
            folder.mkdir()
            return fetch_to_file(url, folder, settings, deadline).path

        deadline = Deadline(settings.fetch_total_timeout)
        fetch_all(fetch, urls, settings.fetch_concurrency, deadline)


def _timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


class _delayed_server:
    """A local HTTP server that answers every GET with ``body`` after ``delay`` seconds."""

    def __init__(self, body: bytes, delay: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _plot(video_rows: list[list[object]], download_rows: list[list[object]]):
    figure, axis = plt.subplots(figsize=(6, 3))
    labels = [f"decode-ahead, {row[0]}" for row in video_rows] + [f"downloads x{row[2]}" for row in download_rows[1:]]
    speedups = [row[4] for row in video_rows] + [row[4] for row in download_rows[1:]]
    axis.barh(labels, speedups, color="tab:blue")
    axis.axvline(1.0, color="grey", linewidth=1)
    axis.set_xlabel("speed-up over no overlap")
    axis.set_title("Overlapping I/O with compute inside a task")
    return figure
