"""(e) The API under load, for each service form: submit latency at a fixed offered rate, the drain of a
burst, and the worker pool's memory over many small tasks.

* latency: open loop from this process at 200 req/s (a planned send time per request, so a slow server
  cannot slow the generator down and hide its own latency: latency counts from the planned time), once with
  the worker pool paused (SIGSTOP: the API alone, as on its own host) and once while the pool works;
* burst: 2,000 tasks submitted as fast as 8 clients can, then the time from the first task created to the
  last finished, and every task's final status counted in the database (lost = not final);
* memory: RSS of the worker pool processes (psutil) after warm-up and after every chunk of small tasks.
Every task is a 96 px JPEG of a real face (the astronaut's head), uploaded as base64.
"""

from __future__ import annotations

import queue
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import httpx
import matplotlib.pyplot as plt
import numpy as np

from bench.options import RunOptions
from bench.report import Section, Table, Target
from bench.running_services import (
    STALL_TIMEOUT,
    Service,
    Submitted,
    now,
    pinned,
    running_forms,
    split_cpus,
    submit,
    submit_all,
    tiny_task_body,
)
from facequeue.core.enums import FINAL_STATUSES

OFFERED_RATE = 200.0  # requests per second
LATENCY_REQUESTS = 2000
LATENCY_MAX_SECONDS = 30.0
LOAD_THREADS = 32
BURST_TASKS = 2000
RSS_CHUNK = 500  # tasks submitted, then drained, per memory reading (keeps the broker's backlog bounded)
QUICK = {"latency": 40, "burst": 40, "rss": 40}
MIB = 1024 * 1024


# The latency is measured twice: with the worker pool paused (the API alone, as on its own host) and while
# the pool processes the submitted tasks on the same 2 cores.
WORKERS_PAUSED = "workers paused"
WORKERS_BUSY = "workers busy"
P99_TARGET_MS = 20.0
RSS_GROWTH_TARGET = 0.05


@dataclass
class LatencyRun:
    latencies: list[float] = field(default_factory=list)  # seconds from the planned send time, accepted submits
    send_lags: list[float] = field(default_factory=list)  # seconds the generator's clock loop ran late
    offered: int = 0
    rejected: int = 0
    achieved_rate: float = 0.0


@dataclass
class FormResult:
    latency: dict[str, LatencyRun] = field(default_factory=dict)
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
    generator_cpus, service_cpus = split_cpus()
    with pinned(generator_cpus):
        for form, service in running_forms(options.forms, options.workdir, section.notes, service_cpus):
            results[form] = measure_form(service, body, sizes)
    section.tables += _tables(results, sizes)
    section.targets += _targets(results, sizes)
    section.notes.append(
        f"the load generator (this process) runs pinned to CPU {sorted(generator_cpus)} and every process of the "
        f"service to CPUs {sorted(service_cpus)} (sched_setaffinity, as `taskset` does); the workers process the "
        "submitted tasks on those CPUs while the latency is measured"
    )
    if results:
        section.figures["latency-rss"] = _plot(results)
    return section


def measure_form(service: Service, body: dict, sizes: dict[str, int]) -> FormResult:
    """Latency, then the burst, then memory chunks; stops early if the worker dies (noted by the caller)."""
    result = FormResult()
    result.rss.append((0, _pool_rss(service, result)))
    for condition in (WORKERS_PAUSED, WORKERS_BUSY):
        since = now()
        with service.workers_paused() if condition == WORKERS_PAUSED else nullcontext():
            result.latency[condition] = open_loop(
                service.base_url, body, sizes["latency"], OFFERED_RATE, LATENCY_MAX_SECONDS
            )
        _drain_and_read_rss(service, since, sum(1 for _ in result.latency[condition].latencies), result)
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


def open_loop(base_url: str, body: dict, count: int, rate: float, max_seconds: float) -> LatencyRun:
    """Send ``count`` submits at ``rate`` per second (or until ``max_seconds``)."""
    run = LatencyRun()
    # One client (and connection) per thread, made and connected before the clock starts: creating an
    # httpx client takes tens of ms, which would otherwise count as the first requests' latency.
    clients = [httpx.Client(base_url=base_url, timeout=30) for _ in range(LOAD_THREADS)]
    for client in clients:
        client.get("/healthz")
    idle: queue.SimpleQueue[httpx.Client] = queue.SimpleQueue()
    for client in clients:
        idle.put(client)

    def send(planned: float) -> Submitted:
        client = idle.get()
        try:
            return submit(client, body, started=planned)
        finally:
            idle.put(client)

    futures = []
    start = time.perf_counter() + 0.1
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for index in range(count):
            planned = start + index / rate
            if planned - start > max_seconds:
                break
            time.sleep(max(0.0, planned - time.perf_counter()))
            run.send_lags.append(time.perf_counter() - planned)  # the generator's own lateness, not the server's
            futures.append(pool.submit(send, planned))
        outcomes = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    accepted = [outcome for outcome in outcomes if outcome.task_id]
    run.offered = len(outcomes)
    run.rejected = len(outcomes) - len(accepted)
    run.latencies = [outcome.latency_s for outcome in accepted]
    run.achieved_rate = len(accepted) / elapsed
    return run


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
        [
            "form",
            "worker pool",
            "offered",
            "accepted req/s",
            "rejected",
            "p50 ms",
            "p99 ms",
            "max ms",
            "generator's own lag p99 ms",
        ],
        [
            [
                form,
                condition,
                run.offered,
                run.achieved_rate,
                run.rejected,
                _percentile(run.latencies, 50),
                _percentile(run.latencies, 99),
                max(run.latencies, default=float("nan")) * 1000,
                _percentile(run.send_lags, 99),
            ]
            for form, r in results.items()
            for condition, run in r.latency.items()
        ],
        f"POST /v1/detect latency, open loop at {OFFERED_RATE:.0f} req/s offered, from the planned send time "
        "(the generator's own lag: how late its send loop handed requests over; waiting for a free connection "
        "behind slow answers is the server's latency)",
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
        for condition, run in r.latency.items():
            p99 = _percentile(run.latencies, 99)
            targets.append(
                Target(
                    f"{form}, {condition}: submit p99 < {P99_TARGET_MS:.0f} ms at {OFFERED_RATE:.0f} req/s",
                    f"p50 {_percentile(run.latencies, 50):.1f} ms, p99 {p99:.1f} ms, "
                    f"{run.achieved_rate:.0f} req/s accepted, {run.rejected} rejected",
                    p99 < P99_TARGET_MS and not run.rejected,
                    f"the load generator's send loop ran up to {_percentile(run.send_lags, 99):.1f} ms late (p99); "
                    "the rest is requests queueing behind the API's handling time, on the 2 cores the generator "
                    "(and the busy pool) also use",
                )
            )
        growth = (r.rss[-1][1] - r.rss[0][1]) / r.rss[0][1] if r.rss and r.rss[0][1] else float("nan")
        targets.append(
            Target(
                f"{form}: worker pool RSS flat within {RSS_GROWTH_TARGET:.0%} over {r.rss[-1][0] - r.rss[0][0]} tasks",
                f"{growth:+.1%} ({r.rss[0][1]:.0f} -> {r.rss[-1][1]:.0f} MiB)",
                abs(growth) <= RSS_GROWTH_TARGET,
                "the pool's memory grew",
            )
        )
    return targets


def _plot(results: dict[str, FormResult]):
    figure, (latency, memory) = plt.subplots(1, 2, figsize=(10, 3.5))
    for form, r in results.items():
        for condition, run in r.latency.items():
            values = np.sort(np.array(run.latencies) * 1000)
            latency.plot(values, np.arange(1, len(values) + 1) / max(1, len(values)), label=f"{form}, {condition}")
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
