"""`python -m bench [names...] [--quick] [--output DIR]`: run benchmarks, print and record their tables."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import (
    accuracy,
    api_load,
    client_wait,
    embedded_stack,
    engine,
    overlap,
    peer,
    search,
    service_throughput,
    sizing,
    task_cost,
    upload_cost,
    video,
)
from bench.data import REPO_ROOT, BenchmarkSkipped
from bench.options import DEFAULTS, RunOptions
from bench.report import Report, Section

BENCHMARKS: dict[str, tuple[str, Callable[[RunOptions], Section]]] = {
    "service": (
        "(a) service vs bare model: img/s through the whole service against a bare YuNet loop",
        service_throughput.run,
    ),
    "video": ("(b) video sampling against sequential decode, keyframe seeking and read-all", video.run),
    "overlap": ("decode-ahead and concurrent downloads inside a task, each on and off", overlap.run),
    "peer": ("(c) face_recognition (dlib HOG) against facequeue's detector: throughput and recall", peer.run),
    "accuracy": ("(d) WIDER AP, landmark NME, identity clustering, persons per single-face clip", accuracy.run),
    "api": ("(e) submit latency at 200 req/s, burst drain, worker RSS over many tasks", api_load.run),
    "upload_cost": (
        "API CPU per MB of upload to POST /v1/detect: base64 JSON, the file as the body, multipart/form-data",
        upload_cost.run,
    ),
    "sizing": (
        "deploy sizing: RSS per API and worker process, tasks/s per core for images and 10-frame videos",
        sizing.run,
    ),
    "engine": (
        "vision engine: each ONNX model on ONNX Runtime against OpenCV, ms/img at 640 and 1280, 1 thread and all",
        engine.run,
    ),
    "stack": (
        "embedded stack: serve's first and warm start time, its Postgres's and Redis's memory, an empty data dir",
        embedded_stack.run,
    ),
    "client_wait": (
        "Client.wait: requests per task for a 10 s video, on the event stream and polling only",
        client_wait.run,
    ),
    "search": (
        "face collections: insert, HNSW build, size and top-10 latency/recall at N synthetic faces; rank-1, TAR@FAR",
        search.run,
    ),
    "task_cost": (
        "CPU ms per image and 10-frame video task by component (API, DB, broker, download, decode, model, webhook...), "
        "summed over every process of the distributed stack",
        task_cost.run,
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of facequeue. Each prints a table and appends a dated section to BENCHMARKS.md.",
        epilog="\n".join(f"{name}: {description}" for name, (description, _) in BENCHMARKS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--output", type=Path, default=REPO_ROOT, help="where BENCHMARKS.md and bench/{out,plots}/ go")
    parser.add_argument("--images", type=int, default=DEFAULTS.images, help="(a) images through each path")
    parser.add_argument("--rss-tasks", type=int, default=DEFAULTS.rss_tasks, help="(e) tasks between RSS readings")
    parser.add_argument(
        "--forms",
        default=",".join(DEFAULTS.forms),
        help="(a, e, client_wait) service forms to run: embedded and/or distributed (Postgres + Redis, when reachable)",
    )
    parser.add_argument(
        "--faces", type=int, default=None, help="(search) synthetic faces in the collection (default 1,000,000)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = Report(args.output.resolve())
    failed = []
    with tempfile.TemporaryDirectory(prefix="facequeue-bench-") as workdir:
        options = RunOptions(
            quick=args.quick,
            output=args.output.resolve(),
            workdir=Path(workdir),
            cache_dir=report.scratch_dir,
            images=args.images,
            rss_tasks=args.rss_tasks,
            forms=tuple(form for form in args.forms.split(",") if form),
            faces=args.faces,
        )
        for name in args.names or BENCHMARKS:
            try:
                report.publish(BENCHMARKS[name][1](options))
            except BenchmarkSkipped as error:
                print(f"{name}: skipped, {error}", file=sys.stderr)
                failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
