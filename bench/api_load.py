"""(e) The API under load, for each service form: submit latency at a fixed offered rate, the drain of a
burst, and the worker pool's memory over many small tasks.

* latency: open loop from this process at 200 req/s (a planned send time per request, so a slow server
  cannot slow the generator down and hide its own latency: latency counts from the planned time);
* burst: 2,000 tasks submitted as fast as 8 clients can, then the time from the first task created to the
  last finished, and every task's final status counted in the database (lost = not final);
* memory: RSS of each worker pool process (psutil) after warm-up and after every chunk of small tasks.
Every task is a 96 px JPEG of a real face (the astronaut's head), uploaded as base64.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import matplotlib.pyplot as plt
import numpy as np

from bench.options import RunOptions
from bench.report import Section, Table, Target
from bench.services import (
    STALL_TIMEOUT,
    Service,
    Submitted,
    now,
    running_forms,
    submit,
    submit_all,
    tiny_task_body,
)
from db.models import FINAL_STATUSES

OFFERED_RATE = 200.0  # requests per second
LATENCY_REQUESTS = 2000
LATENCY_MAX_SECONDS = 30.0
LOAD_THREADS = 32
BURST_TASKS = 2000
RSS_CHUNK = 500  # tasks submitted, then drained, per memory reading (keeps the broker's backlog bounded)
QUICK = {"latency": 40, "burst": 40, "rss": 40}
MIB = 1024 * 1024


@dataclass
class FormResult:
    latencies: list[float] = field(default_factory=list)  # seconds, accepted submits
    offered: int = 0
    rejected: int = 0
    achieved_rate: float = 0.0
    burst_submit_s: float = 0.0
    burst_drain_s: float = 0.0
    burst_counts: dict[str, int] = field(default_factory=dict)
    rss: list[tuple[int, float]] = field(default_factory=list)  # (tasks done, pool RSS MiB)
    pool_sizes: list[int] = field(default_factory=list)


def run(options: RunOptions) -> Section:
    sizes = QUICK if options.quick else {"latency": LATENCY_REQUESTS, "burst": BURST_TASKS, "rss": options.rss_tasks}
    body = tiny_task_body()
    section = Section("api", "(e) API: latency, burst drain, worker memory", options.command("api"))
    results: dict[str, FormResult] = {}
    for form, service in running_forms(options.forms, options.workdir, section.notes):
        results[form] = measure_form(service, body, sizes)
    section.tables += _tables(results, sizes)
    section.targets += _targets(results, sizes)
    section.notes.append(
        "the load generator runs on the same 2 cores as the API and the workers, which also process the "
        "submitted tasks while the latency is measured"
    )
    if results:
        section.figures["latency-rss"] = _plot(results)
    return section


def measure_form(service: Service, body: dict, sizes: dict[str, int]) -> FormResult:
    """Latency, then the burst, then memory chunks; stops early if the worker dies (noted by the caller)."""
    result = FormResult()
    result.rss.append((0, _pool_rss(service, result)))
    since = now()
    accepted = open_loop(service.base_url, body, sizes["latency"], OFFERED_RATE, LATENCY_MAX_SECONDS, result)
    _drain_and_read_rss(service, since, accepted, result)
    since = now()
    started = time.perf_counter()
    accepted = sum(1 for item in submit_all(service.base_url, [body] * sizes["burst"]) if item.task_id)
    result.burst_submit_s = time.perf_counter() - started
    counts = _drain_and_read_rss(service, since, accepted, result)
    result.burst_counts = {status: counts[status] for status in sorted(counts)} | {"accepted": accepted}
    result.burst_drain_s = service.span_seconds(since)
    for chunk in _chunks(sizes["rss"], RSS_CHUNK):
        if not service.worker_alive():
            break
        since = now()
        accepted = sum(1 for item in submit_all(service.base_url, [body] * chunk) if item.task_id)
        _drain_and_read_rss(service, since, accepted, result)
    return result


def _drain_and_read_rss(service: Service, since, expected: int, result: FormResult) -> Counter[str]:
    counts = service.wait_final(since, expected)
    done = result.rss[-1][0] + sum(counts[status] for status in FINAL_STATUSES)
    if service.worker_alive():
        result.rss.append((done, _pool_rss(service, result)))
    return counts


def open_loop(base_url: str, body: dict, count: int, rate: float, max_seconds: float, result: FormResult) -> int:
    """Send ``count`` submits at ``rate`` per second (or until ``max_seconds``); returns how many were accepted."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def send(planned: float) -> Submitted:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, timeout=30)
            clients.append(local.client)
        return submit(local.client, body, started=planned)

    futures = []
    start = time.perf_counter() + 0.1
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for index in range(count):
            planned = start + index / rate
            if planned - start > max_seconds:
                break
            time.sleep(max(0.0, planned - time.perf_counter()))
            futures.append(pool.submit(send, planned))
        outcomes = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    accepted = [outcome for outcome in outcomes if outcome.task_id]
    result.offered = len(outcomes)
    result.rejected = len(outcomes) - len(accepted)
    result.latencies = [outcome.latency_s for outcome in accepted]
    result.achieved_rate = len(accepted) / elapsed
    return len(accepted)


def _pool_rss(service: Service, result: FormResult) -> float:
    pool = service.worker_pool()
    result.pool_sizes.append(len(pool))
    return sum(process.memory_info().rss for process in pool) / MIB


def _chunks(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share)) * 1000 if values else float("nan")


def _tables(results: dict[str, FormResult], sizes: dict[str, int]) -> list[Table]:
    latency = Table(
        ["form", "offered", "accepted req/s", "rejected", "p50 ms", "p99 ms", "max ms"],
        [
            [
                form,
                r.offered,
                r.achieved_rate,
                r.rejected,
                _percentile(r.latencies, 50),
                _percentile(r.latencies, 99),
                max(r.latencies, default=float("nan")) * 1000,
            ]
            for form, r in results.items()
        ],
        f"POST /v1/detect latency, open loop at {OFFERED_RATE:.0f} req/s offered, from the planned send time",
    )
    burst = Table(
        ["form", "tasks", "submit s", "drain s (first created to last finished)", "tasks/s", "final statuses in DB"],
        [
            [
                form,
                sizes["burst"],
                r.burst_submit_s,
                r.burst_drain_s,
                sizes["burst"] / r.burst_drain_s,
                ", ".join(f"{status} {count}" for status, count in r.burst_counts.items()),
            ]
            for form, r in results.items()
        ],
        "burst",
    )
    memory = Table(
        [
            "form",
            "pool processes",
            "tasks between readings",
            "pool RSS before MiB",
            "after MiB",
            "growth MiB",
            "growth per 1,000 tasks MiB",
        ],
        [
            [
                form,
                statistics.mode(r.pool_sizes),
                r.rss[-1][0] - r.rss[0][0],
                r.rss[0][1],
                r.rss[-1][1],
                r.rss[-1][1] - r.rss[0][1],
                1000 * (r.rss[-1][1] - r.rss[0][1]) / max(1, r.rss[-1][0] - r.rss[0][0]),
            ]
            for form, r in results.items()
        ],
        "worker pool memory (sum over the pool processes) from after warm-up to the end, every task counted",
    )
    return [latency, burst, memory]


def _targets(results: dict[str, FormResult], sizes: dict[str, int]) -> list[Target]:
    targets = []
    for form, r in results.items():
        final = sum(r.burst_counts.get(status, 0) for status in FINAL_STATUSES)
        lost = sizes["burst"] - final
        targets.append(
            Target(
                f"{form}: burst of {sizes['burst']} drains with 0 lost",
                f"{lost} lost, drained in {r.burst_drain_s:.1f} s",
                lost == 0,
                f"not final when the wait ended (worker gone, or none finished for {STALL_TIMEOUT:.0f} s): {lost}",
            )
        )
        targets.append(
            Target(
                f"{form}: the API keeps up with {OFFERED_RATE:.0f} req/s offered",
                f"{r.achieved_rate:.0f} req/s accepted, {r.rejected} rejected",
                r.achieved_rate >= 0.95 * OFFERED_RATE and not r.rejected,
                f"p99 {_percentile(r.latencies, 99):.0f} ms: requests queue behind the API's handling time",
            )
        )
    return targets


def _plot(results: dict[str, FormResult]):
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(10, 3.5))
    for form, r in results.items():
        values = np.sort(np.array(r.latencies) * 1000)
        latency.plot(values, np.arange(1, len(values) + 1) / max(1, len(values)), label=form)
        memory.plot([done for done, _ in r.rss], [rss for _, rss in r.rss], marker="o", label=form)
    latency.set_xscale("log")
    latency.set_xlabel(f"submit latency ms at {OFFERED_RATE:.0f} req/s")
    latency.set_ylabel("share of requests")
    memory.set_xlabel("tasks finished since warm-up")
    memory.set_ylabel("worker pool RSS MiB")
    latency.legend()
    memory.legend()
    figure.tight_layout()
    return figure
