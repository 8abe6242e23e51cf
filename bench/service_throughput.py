"""(a) The same images through a bare in-process YuNet loop and through the whole service at saturation.

Bare: decode_image + detect_faces at the service's default working size, one image after another in this
process, on the service's runtime (ONNX Runtime); the ratios are taken against it. The same loop on OpenCV's
FaceDetectorYN (`bench engine`'s reference, its own threads) gives the speed-up over the OpenCV bare loop.
Service: every image submitted at once as a base64 upload, then API -> database -> broker -> worker pool
(2 processes) -> database, the driver pinned to one core and the service (and, before it, the bare loops) to the
rest, as `bench api` splits them; its rate is the number of images over the time from the first task created to the
last one finished, both read from the database.
"""

from __future__ import annotations

import itertools
import statistics
import time
from pathlib import Path

import matplotlib.pyplot as plt

from bench.data import labelled_images
from bench.engine import OpenCVYuNet
from bench.options import RunOptions
from bench.report import Section, Table, Target
from bench.running_services import (
    WORKER_CONCURRENCY,
    image_body,
    now,
    pinned,
    running_forms,
    split_cpus,
    submit_all,
)
from workers.vision import FaceDetector

TARGET_RATIO = 0.85
QUICK_IMAGES = 12


def run(options: RunOptions) -> Section:
    count = QUICK_IMAGES if options.quick else options.images
    # The 13 labelled photos, repeated: group photos of 332x500 to 1024x732 px, 2 to 142 faces each.
    paths = list(itertools.islice(itertools.cycle(image.path for image in labelled_images()), count))
    section = Section("service", "(a) service vs bare model", options.command("service"))
    driver_cpus, service_cpus = split_cpus()
    with pinned(service_cpus):  # the bare loops get the cores the service will get
        bare_seconds = bare_loop(paths)
        opencv_seconds = bare_loop(paths, OpenCVYuNet())
    bare_rate, opencv_rate = count / bare_seconds, count / opencv_seconds
    rows = [
        ["bare YuNet loop, ONNX Runtime (the service's)", count, bare_seconds, bare_rate, 1.0]
        + [bare_rate / opencv_rate, "", "", ""],
        ["bare YuNet loop, OpenCV (reference)", count, opencv_seconds, opencv_rate, opencv_rate / bare_rate]
        + [1.0, "", "", ""],
    ]
    rates = {"bare loop": bare_rate, "bare loop, OpenCV": opencv_rate}
    with pinned(driver_cpus):
        services = running_forms(options.forms, options.workdir, section.notes, service_cpus)
        runs = {form: through_service(service, paths) for form, service in services}
    for form, run_ in runs.items():
        rate = run_["succeeded"] / run_["seconds"]
        rates[f"service, {form}"] = rate
        ratio = rate / bare_rate
        rows.append(
            [f"service, {form}", run_["succeeded"], run_["seconds"], rate, ratio, rate / opencv_rate]
            + [_ms(run_["timings"], stage) for stage in ("decode", "detect", "total")]
        )
        section.targets.append(
            Target(
                f"{form} service >= {TARGET_RATIO}x the bare loop's img/s",
                f"{ratio:.2f}x: {rate:.1f} vs {bare_rate:.1f} img/s",
                ratio >= TARGET_RATIO and run_["succeeded"] == count,
                _bound(run_, bare_seconds / count),
            )
        )
    section.tables.append(
        Table(
            [
                "path",
                "images",
                "seconds",
                "img/s",
                "ratio to bare",
                "x OpenCV bare",
                "worker decode ms",
                "worker detect ms",
                "worker task ms",
            ],
            rows,
            f"{count} images, the service's default max_side; worker columns: mean per task from the tasks' timings",
        )
    )
    section.notes.append(
        f"the driver (this process: submitting, then polling the database) runs pinned to CPU {sorted(driver_cpus)}; "
        f"the bare loops and every process of the service to CPUs {sorted(service_cpus)} (sched_setaffinity, as "
        "`taskset` does)"
    )
    section.figures["rates"] = _plot(rates)
    return section


def bare_loop(paths: list[Path], detector: FaceDetector | None = None) -> float:
    """Seconds to decode and detect every image with `detector` (default: the service's), after one warm-up
    image (model load)."""
    from facequeue.core.settings import get_settings
    from workers.detectors.registry import get_detector
    from workers.media.image import decode_image
    from workers.vision import detect_faces

    settings = get_settings()
    detector = detector or get_detector()

    def one(path: Path) -> None:
        detect_faces(detector, decode_image(path, settings), settings.detector_max_side)

    one(paths[0])
    started = time.perf_counter()
    for path in paths:
        one(path)
    return time.perf_counter() - started


def through_service(service, paths: list[Path]) -> dict:
    bodies = {path: image_body(path) for path in set(paths)}  # encoded before the clock starts
    since = now()
    started = time.perf_counter()
    submitted = submit_all(service.base_url, [bodies[path] for path in paths], threads=4)
    submit_seconds = time.perf_counter() - started
    accepted = sum(1 for item in submitted if item.task_id)
    counts = service.wait_final(since, accepted)
    return {
        "form": service.form,
        "submit_seconds": submit_seconds,
        "succeeded": counts["succeeded"],
        "seconds": service.span_seconds(since),
        "timings": service.worker_timings(since),
    }


def _ms(timings: list[dict[str, float]], stage: str) -> float:
    return 1000 * statistics.fmean(timing.get(stage, 0.0) for timing in timings) if timings else float("nan")


def _bound(run_: dict, bare_per_image: float) -> str:
    """Where the service's time goes, from the workers' own per-task timings."""
    task = _ms(run_["timings"], "total") / 1000
    pool_rate = WORKER_CONCURRENCY / task if task else float("nan")
    parts = [
        f"a task takes {task * 1000:.0f} ms inside a worker against {bare_per_image * 1000:.0f} ms per image in "
        f"the bare loop, so {WORKER_CONCURRENCY} pool processes alone would top out at {pool_rate:.1f} img/s",
        f"the API took {run_['submit_seconds']:.1f} s of the {run_['seconds']:.1f} s to accept the uploads, on the "
        "same cores as the workers",
    ]
    return "; ".join(parts)


def _plot(rates: dict[str, float]):
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.barh(list(rates), list(rates.values()), color=["grey", "lightgrey", *["tab:blue"] * (len(rates) - 2)])
    axis.set_xlabel("images per second")
    axis.set_title("Same images: bare YuNet loop vs whole service")
    for position, rate in enumerate(rates.values()):
        axis.text(rate, position, f" {rate:.1f}", va="center")
    return figure
