"""What `Client.wait` costs per task: HTTP requests (and wall seconds) for a 10 s video with a face, waited for on
the task's event stream (the default) and by polling only (the client's fallback where a server has no stream).

Polling is forced the way a client meets it: the client talks to a small forwarding proxy that answers 404 at
`/v1/detect/{id}/events` and passes everything else on to the service unchanged.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import matplotlib.pyplot as plt
from facequeue_client import Client, PollPolicy

from bench.options import RunOptions
from bench.report import Section, Table
from bench.running_services import running_forms
from facequeue.cli.demo import moving_face_frames, write_video

FPS = 25
VIDEO_SECONDS = 10
QUICK_VIDEO_SECONDS = 2
NUM_FRAMES = (5, 25)
QUICK_NUM_FRAMES = (5,)
TASKS_PER_CASE = 3
WAIT_TIMEOUT = 600.0
PROXY_TIMEOUT = 60.0
MODES = ("event stream", "polling only")
# The service's own answer to an unknown route, so the client sees what an older server would send.
NO_ROUTE_BODY = b'{"error":{"code":"not_found","message":"Not Found"}}'


@dataclass(frozen=True)
class Waited:
    requests_waiting: int  # request_count delta over wait() alone
    requests_total: int  # submit included
    seconds: float  # submit to final
    status: str
    frames: int


def run(options: RunOptions) -> Section:
    section = Section("client_wait", "Client.wait: requests per task for a 10 s video", options.command("client_wait"))
    load = os.getloadavg()[0]  # before the service starts: how busy the machine was anyway
    seconds = QUICK_VIDEO_SECONDS if options.quick else VIDEO_SECONDS
    video = write_video(options.workdir / f"face-{seconds}s.mp4", moving_face_frames(seconds * FPS))
    num_frames = QUICK_NUM_FRAMES if options.quick else NUM_FRAMES
    repeats = 1 if options.quick else TASKS_PER_CASE
    rows, plotted = [], {}
    for form, service in running_forms(options.forms, options.workdir, section.notes):
        with _without_event_stream(service.base_url) as polling_url:
            for mode, base_url in zip(MODES, (service.base_url, polling_url), strict=True):
                with Client(base_url) as client:
                    for frames in num_frames:
                        waited = [_submit_and_wait(client, video, frames) for _ in range(repeats)]
                        rows.append(_row(form, mode, frames, waited))
                        plotted[f"{form}, {mode}, {frames} frames"] = statistics.mean(
                            item.requests_waiting for item in waited
                        )
    section.tables.append(
        Table(
            [
                "form",
                "wait",
                "num_frames",
                "tasks",
                "requests/task (wait)",
                "requests/task (with submit)",
                "wall s/task",
                "final",
            ],
            rows,
            caption=f"a {seconds} s {FPS} fps 640x360 clip with one moving face (facequeue/cli/demo.py), "
            "submitted with Client.detect(path, num_frames=N) then Client.wait(); requests from client.request_count",
        )
    )
    poll = PollPolicy()  # the pace Client.wait polls at, as the benchmark ran it
    section.notes += [
        f"Requests per task depend on how long a task runs only when polling (its pause grows {poll.first} s "
        f"x{poll.growth} up to {poll.longest} s); on the event stream wait is one stream plus one GET of the final "
        "task, whatever the duration.",
        "Polling only: the client was pointed at a proxy answering 404 at /events, so its one failed "
        "stream attempt is counted; then it polls GET /v1/detect/{id}.",
        f"1-minute load average at the start: {load:.1f} on {os.cpu_count()} cores. A busy machine inflates wall "
        "seconds, and so polling's request count (a longer task is polled more); the event stream's does not change.",
    ]
    section.figures["requests"] = _plot(plotted)
    return section


def _submit_and_wait(client: Client, video: Path, frames: int) -> Waited:
    before = client.request_count
    started = time.perf_counter()
    task = client.detect(video, num_frames=frames)
    submitted = client.request_count
    done = client.wait(task, timeout=WAIT_TIMEOUT)
    return Waited(
        client.request_count - submitted,
        client.request_count - before,
        time.perf_counter() - started,
        done.status,
        len(done.result.faces_obj) if done.result else 0,
    )


def _row(form: str, mode: str, frames: int, waited: list[Waited]) -> list[object]:
    statuses = sorted({f"{item.status} ({item.frames} frames)" for item in waited})
    return [
        form,
        mode,
        frames,
        len(waited),
        statistics.mean(item.requests_waiting for item in waited),
        statistics.mean(item.requests_total for item in waited),
        statistics.mean(item.seconds for item in waited),
        ", ".join(statuses),
    ]


@contextmanager
def _without_event_stream(upstream: str) -> Iterator[str]:
    """A local proxy to ``upstream`` whose task event streams answer 404; yields its base URL."""
    http = httpx.Client(base_url=upstream, timeout=PROXY_TIMEOUT)

    class Forward(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            if self.path.split("?")[0].endswith("/events"):
                self._answer(404, {"content-type": "application/json"}, NO_ROUTE_BODY)
                return
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
            response = http.request(self.command, self.path, content=body, headers=headers)
            self._answer(
                response.status_code, {"content-type": response.headers.get("content-type", "")}, response.content
            )

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *_args: object) -> None:
            pass  # the benchmark prints its table, not one line per request

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        http.close()


def _plot(requests: dict[str, float]):
    figure, axes = plt.subplots(figsize=(8, 0.5 + 0.45 * len(requests)))
    axes.barh(list(requests), list(requests.values()))
    axes.invert_yaxis()
    axes.set_xlabel("requests per task during wait (mean)")
    axes.set_title("Client.wait: event stream vs polling only")
    return figure
