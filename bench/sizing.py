"""Sizing for deploy/: memory per API process and per worker process, and tasks per second per core for
images and for 10-frame videos, on the distributed form as deploy/ runs it (`facequeue api --workers 2`,
`facequeue worker --concurrency 2`, Postgres, Redis).

* throughput per core: tasks over the CPU time the worker's pool processes spent on them (psutil), so the
  figure holds whatever else runs on the machine's cores; the wall-clock rate is given beside it;
* memory: read once both runs are over, when every process has served its share. RSS counts pages shared
  with the parent (forked pool processes share the loaded libraries) in every process; PSS splits them, so
  the PSS of a pod's processes adds up to what its memory limit sees.
Media are made from the astronaut photo: a 1280x720 JPEG with three faces, and a 1280x720, 5 s H.264 clip
with two faces, sampled at 10 frames.
"""

from __future__ import annotations

import base64
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

import cv2
import psutil

from bench.data import BenchmarkSkipped
from bench.options import RunOptions
from bench.report import Section, Table
from bench.running_services import (
    WORKER_CONCURRENCY,
    Service,
    distributed_unavailable,
    now,
    running,
    submit_all,
)

FULL = {"images": 200, "videos": 40}
QUICK = {"images": 6, "videos": 2}
VIDEO_FRAMES = 10
MIB = 1024 * 1024


@dataclass
class Throughput:
    kind: str
    tasks: int
    succeeded: int
    pool_cpu_seconds: float
    wall_seconds: float


def run(options: RunOptions) -> Section:
    reason = distributed_unavailable()
    if reason:
        raise BenchmarkSkipped(f"sizing measures the distributed form, which cannot run here: {reason}")
    counts = QUICK if options.quick else FULL
    section = Section("sizing", "deploy sizing: memory per process, tasks per core", options.command("sizing"))
    image, video = image_body(), video_body(options.workdir)
    with running("distributed", options.workdir) as service:
        runs = [
            through_pool(service, "image 1280x720, 3 faces", [image] * counts["images"]),
            through_pool(service, f"video 720p 5 s, {VIDEO_FRAMES} frames", [video] * counts["videos"]),
        ]
        memory = memory_rows(service)
        section.notes.extend(f"the service logged: {line}" for line in service.failures())
    section.tables.append(
        Table(["process", "count", "RSS MiB (mean)", "RSS MiB (max)", "PSS MiB (mean)"], memory, "after both runs")
    )
    section.tables.append(
        Table(
            ["tasks", "submitted", "succeeded", "pool CPU s", "tasks/s per core", "wall s", "tasks/s (wall)"],
            [
                [
                    item.kind,
                    item.tasks,
                    item.succeeded,
                    item.pool_cpu_seconds,
                    item.succeeded / item.pool_cpu_seconds if item.pool_cpu_seconds else float("nan"),
                    item.wall_seconds,
                    item.succeeded / item.wall_seconds if item.wall_seconds else float("nan"),
                ]
                for item in runs
            ],
            f"per core: tasks over the CPU time of the {WORKER_CONCURRENCY} pool processes (one OpenCV thread each); "
            "wall: first task created to last finished",
        )
    )
    section.notes.append(
        f"{os.cpu_count()} cores shared by the API, the worker, Postgres, Redis and the load generator: the "
        "wall-clock rates are bounded by that, the per-core rates are not"
    )
    return section


def through_pool(service: Service, kind: str, bodies: list[dict]) -> Throughput:
    pool = service.worker_pool()
    before = _cpu_seconds(pool)
    since = now()
    accepted = sum(1 for item in submit_all(service.base_url, bodies, threads=4) if item.task_id)
    counts = service.wait_final(since, accepted)
    if {process.pid for process in service.worker_pool()} != {process.pid for process in pool}:
        raise RuntimeError("a pool process was replaced during the run: its CPU time would be lost")
    return Throughput(kind, len(bodies), counts["succeeded"], _cpu_seconds(pool) - before, service.span_seconds(since))


def memory_rows(service: Service) -> list[list[object]]:
    api_main, worker_main = (psutil.Process(process.pid) for process in service.processes)
    # uvicorn --workers N: a supervisor and N spawned server processes (the ones that serve requests)
    api_servers = [child for child in api_main.children() if "spawn_main" in " ".join(child.cmdline())]
    groups = {
        "API server process (uvicorn)": api_servers,
        "worker main process (Celery)": [worker_main],
        "worker pool process": service.worker_pool(),
        "worker fetch pool process (download threads)": service.fetch_pool(),
    }
    rows = []
    for name, processes in groups.items():
        info = [process.memory_full_info() for process in processes]
        rss = [item.rss / MIB for item in info]
        rows.append(
            [name, len(info), statistics.fmean(rss), max(rss), statistics.fmean(item.pss / MIB for item in info)]
        )
    return rows


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def image_body() -> dict:
    from facequeue.cli.demo import Placement, compose

    heads = [Placement(x=100 + 400 * k, y=180, height=260, mirrored=k == 1) for k in range(3)]
    jpeg = cv2.imencode(".jpg", compose(1280, 720, heads))[1].tobytes()
    return {"img": base64.b64encode(jpeg).decode()}


def video_body(workdir: Path) -> dict:
    from facequeue.cli.demo import moving_face_frames, write_video

    clip = write_video(workdir / "sizing-clip.mp4", moving_face_frames(count=125, width=1280, height=720, faces=2))
    return {"img": base64.b64encode(clip.read_bytes()).decode(), "num_frames": VIDEO_FRAMES}
