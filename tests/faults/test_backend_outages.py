"""Postgres and Redis failing under a running service (issue 10, sections 2.2 and 2.4).

- frozen by SIGSTOP during a stream of submits: a frozen server keeps its TCP connections open and
  acknowledges every byte, so only the client's own timeouts end a wait. Every submit must be answered,
  202 or 503 with Retry-After in the native shape, within about 2 s; after SIGCONT every accepted task
  ends, once;
- Postgres stopped while a worker takes messages: a claim that cannot reach the database sends its
  message back to the broker with a backoff, never acks it away. The API, whose reaper could republish
  lost messages, is stopped for that test: the tasks can only end through their own messages.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import psutil
import pytest

from tests.faults.audit import NO_FAULTS, audit
from tests.faults.stack import HTTP_TIMEOUT, FaultStack, SubmitResult, post_detect

pytestmark = pytest.mark.faults

FREEZE = 12.0
STREAM_BEFORE, STREAM_AFTER = 3.0, 8.0  # seconds the stream of submits runs before and after the freeze
SUBMIT_EVERY = 0.25
# The worst wait: a pooled Postgres connection's statement timeout (2 s) plus the reply margin (0.5 s);
# Redis's is its 1 s timeout. Then the client fails fast until a connect attempt (2 s) tries again.
ANSWER_TARGET = {"postgres": 3.0, "redis": 2.0}
RECOVERY_BOUND = 60.0  # from SIGCONT, or Postgres's restart, until every accepted task is final
ACCEPTABLE = ("202 in time", "503 in time, Retry-After, native shape")
TASKS_DURING_OUTAGE = 20
OUTAGE = 10.0  # seconds the worker keeps taking messages with Postgres down


@pytest.mark.parametrize("server", ["postgres", "redis"])
def test_frozen_server_gets_every_submit_answered_in_time(stack: FaultStack, media, measure, server: str) -> None:
    process = _server_process(stack, server)
    results, frozen_at, thawed_at = asyncio.run(_stream_through_freeze(stack, media.image_task(), process))
    accepted = [result.task_id for result in results if result.status == 202]
    finished = stack.wait_final(accepted, RECOVERY_BOUND) is not None
    after_thaw = time.monotonic() - thawed_at  # the stream went on after it: its tasks count too
    outcome = audit(stack, accepted)

    target = ANSWER_TARGET[server]
    during = [r for r in results if frozen_at <= r.sent_at <= thawed_at - target]
    answers = Counter(_answer_kind(result, target) for result in during)
    measure(
        f"{server} frozen {thawed_at - frozen_at:.1f}s: {len(during)} submits during it answered {dict(answers)}"
        f" (slowest {max((r.latency for r in during), default=0):.2f}s); every accepted task final "
        + (f"{after_thaw:.1f}s after SIGCONT" if finished else f"? not within {RECOVERY_BOUND:.0f}s after the stream")
        + f"; {outcome.summary()}"
    )

    assert during and set(answers) <= set(ACCEPTABLE), answers
    assert outcome.faults() == NO_FAULTS


def _server_process(stack: FaultStack, server: str) -> psutil.Process:
    """Redis's one process, or Postgres's postmaster (its backends are its children)."""
    if server == "redis":
        return psutil.Process(stack.redis.server.pid)
    data_dir = str(stack.postgres.data_dir)
    return next(
        process
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] == "postgres" and data_dir in (process.info["cmdline"] or [])
    )


@contextmanager
def _frozen(server: psutil.Process) -> Iterator[None]:
    """SIGSTOP the server and then every child it has: stopped first, it forks no backend after the list."""
    server.send_signal(signal.SIGSTOP)
    processes = [server, *server.children(recursive=True)]
    for process in processes[1:]:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:  # never leave the server stopped for the next test
        for process in processes:
            process.send_signal(signal.SIGCONT)


async def _stream_through_freeze(
    stack: FaultStack, body: dict, server: psutil.Process
) -> tuple[list[SubmitResult], float, float]:
    """Submit every SUBMIT_EVERY seconds, each request on its own, while the server is frozen and thawed."""
    limits = httpx.Limits(max_connections=int(HTTP_TIMEOUT / SUBMIT_EVERY) + 10)  # a hung request never queues others
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=HTTP_TIMEOUT, limits=limits
    ) as client:
        submits: list[asyncio.Task[SubmitResult]] = []

        async def stream(until: float) -> None:
            while time.monotonic() < until:
                submits.append(asyncio.create_task(post_detect(client, body)))
                await asyncio.sleep(SUBMIT_EVERY)

        streaming = asyncio.create_task(stream(time.monotonic() + STREAM_BEFORE + FREEZE + STREAM_AFTER))
        await asyncio.sleep(STREAM_BEFORE)
        with _frozen(server):
            frozen_at = time.monotonic()
            await asyncio.sleep(FREEZE)
            thawed_at = time.monotonic()
        await streaming
        return list(await asyncio.gather(*submits)), frozen_at, thawed_at


def _answer_kind(result: SubmitResult, target: float) -> str:
    if result.status is None:
        return f"no answer ({result.error})"
    timing = "in time" if result.latency <= target else f"slow ({result.latency:.1f}s)"
    if result.status == 202:
        return f"202 {timing}"
    retry = "Retry-After" if result.headers.get("retry-after", "").isdigit() else "no Retry-After"
    error = result.body.get("error") if isinstance(result.body, dict) else None
    native = isinstance(error, dict) and error.get("code") == "service_unavailable"
    return f"{result.status} {timing}, {retry}, {'native shape' if native else 'other body'}"


def test_messages_taken_while_postgres_is_down_are_retried_not_lost(stack: FaultStack, media, measure) -> None:
    stack.worker.stop()
    accepted = [stack.submit(media.image_task()) for _ in range(TASKS_DURING_OUTAGE)]
    stack.api.stop()  # no reaper from here on
    stack.postgres.stop()
    stack.start_worker()  # takes every message while the database is away
    time.sleep(OUTAGE)
    retries = stack.worker.log().count("retry: Retry in")

    stack.postgres.start()
    finished = stack.wait_final(accepted, RECOVERY_BOUND)
    outcome = audit(stack, accepted)
    tasks = stack.tasks()
    measure(
        f"Postgres down {OUTAGE:.0f}s while the worker took {TASKS_DURING_OUTAGE} messages"
        f" ({retries} retries sent): all final "
        + (f"{finished:.1f}s after it was back" if finished is not None else f"? not within {RECOVERY_BOUND:.0f}s")
        + f" with no reaper; {outcome.summary()}"
    )

    assert retries >= TASKS_DURING_OUTAGE
    assert outcome.faults() == NO_FAULTS
    assert {(tasks[task_id]["status"], tasks[task_id]["attempts"]) for task_id in accepted} == {("succeeded", 1)}
