"""API CPU per MB of upload, by how the file reaches POST /v1/detect: base64 in JSON, the file as the body, or
the `file` part of multipart/form-data (api/uploads.py).

The embedded service (`facequeue serve`) with its worker paused, so the API runs alone; one real photo,
re-encoded large, sent one request at a time by this process. The API's CPU is serve's own process (user +
system time, psutil; its Postgres, Redis and worker are children and not counted) across the requests of one
form, after a warm-up request in every form.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import cv2
import httpx
import matplotlib.pyplot as plt
import psutil

from bench.data import labelled_images
from bench.options import RunOptions
from bench.report import Section, Table
from bench.running_services import running

REQUESTS = 40
QUICK_REQUESTS = 3
PHOTO_SIDE = 3000  # px, long side: a JPEG of about 0.8 MB
MB = 1_000_000

Send = Callable[[httpx.Client, bytes], httpx.Response]

FORMS: dict[str, Send] = {
    "base64 JSON": lambda client, jpeg: client.post("/v1/detect", json={"img": base64.b64encode(jpeg).decode()}),
    "file as the body": lambda client, jpeg: client.post(
        "/v1/detect", content=jpeg, headers={"Content-Type": "image/jpeg"}
    ),
    "multipart/form-data": lambda client, jpeg: client.post(
        "/v1/detect", files={"file": ("photo.jpg", jpeg, "image/jpeg")}
    ),
}


def run(options: RunOptions) -> Section:
    title = "API CPU per MB of upload: base64 JSON, the file as the body, multipart"
    section = Section("upload_cost", title, options.command("upload_cost"))
    jpeg = _large_photo()
    count = QUICK_REQUESTS if options.quick else REQUESTS
    rows = []
    with running("embedded", options.workdir) as service, service.workers_paused():
        api = psutil.Process(service.processes[0].pid)
        with httpx.Client(base_url=service.base_url, timeout=60) as client:
            for send in FORMS.values():
                _accepted(send(client, jpeg))
            for form, send in FORMS.items():
                before, started = _cpu_seconds(api), time.perf_counter()
                for _ in range(count):
                    _accepted(send(client, jpeg))
                wall = (time.perf_counter() - started) / count
                cpu = (_cpu_seconds(api) - before) / count
                rows.append([form, count, cpu * 1000, cpu * 1000 / (len(jpeg) / MB), wall * 1000])
    section.tables.append(
        Table(
            ["form", "requests", "API CPU ms per request", "API CPU ms per MB", "wall ms per request"],
            rows,
            f"a {len(jpeg) / MB:.2f} MB JPEG ({PHOTO_SIDE} px long side), embedded service, worker paused",
        )
    )
    section.figures["cpu"] = _plot({row[0]: row[3] for row in rows})
    return section


def _plot(per_mb: dict[str, float]):
    figure, axis = plt.subplots(figsize=(6, 2.5))
    axis.barh(list(per_mb), list(per_mb.values()), color="tab:blue")
    axis.set_xlabel("API CPU ms per MB uploaded")
    axis.set_title("POST /v1/detect: the cost of each way to send the file")
    for position, value in enumerate(per_mb.values()):
        axis.text(value, position, f" {value:.1f}", va="center")
    return figure


def _large_photo() -> bytes:
    image = cv2.imread(str(labelled_images()[0].path))
    scale = PHOTO_SIDE / max(image.shape[:2])
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _accepted(response: httpx.Response) -> None:
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text[:200]}")
