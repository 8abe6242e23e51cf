"""Postgres stops for about 20 s during a stream of submits, while a video runs and a backlog of images
waits in the queue for the free pool process (issue 10, sections 2.2 to 2.4): submits get a quick 503
with Retry-After in the native error shape, and every accepted task (running, or taken from the queue
during the outage) ends once the database is back, in the run that held it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from tests.faults.audit import NO_FAULTS, audit
from tests.faults.stack import HTTP_TIMEOUT, QUEUES, FaultStack, SubmitResult, post_detect

pytestmark = pytest.mark.faults

OUTAGE = 20.0
STREAM_BEFORE, STREAM_AFTER = 4.0, 5.0  # seconds the stream of submits runs before and after the outage
SUBMIT_EVERY = 0.5
BACKLOG = 20  # images submitted at once just before the stop: the free pool process takes them during it
ANSWER_TARGET = 2.5  # "a submit should either succeed or answer 503 within about 2 s"
RECOVERY_BOUND = 180.0  # from Postgres being back until every accepted task is final
GOOD_OUTAGE_ANSWER = "503 in time, Retry-After, native shape"


@dataclass(frozen=True)
class Outage:
    backlog: int  # messages in the queue when the stop began
    down: float  # monotonic: the stop has completed
    restarting: float  # the start begins
    up: float  # accepting connections again


def test_postgres_stop_answers_503_quickly_and_loses_nothing(stack: FaultStack, media, measure) -> None:
    video = stack.submit(media.video_task())  # holds one of the two pool processes through the outage
    deadline = time.monotonic() + 30
    while stack.tasks()[video]["status"] == "queued":
        assert time.monotonic() < deadline, "the video was not claimed within 30s"
        time.sleep(0.1)

    results, outage = asyncio.run(_stream_through_outage(stack, media.image_task()))
    accepted = [video] + [result.task_id for result in results if result.status == 202]
    recovery = stack.wait_for_final(accepted, RECOVERY_BOUND, since=outage.up)
    outcome = audit(stack, accepted)

    # Sent once the stop had completed, and due an answer before the restart began.
    during = [r for r in results if outage.down <= r.sent_at <= outage.restarting - ANSWER_TARGET]
    answers = Counter(_answer_kind(result) for result in during)
    accepted_after = [r.sent_at + r.latency - outage.up for r in results if r.status == 202 and r.sent_at > outage.up]
    measure(
        f"Postgres down {outage.up - outage.down:.1f}s, {outage.backlog} queued images when it stopped: "
        f"{len(during)} submits during it answered {dict(answers)}"
        + f" (slowest {max((r.latency for r in during), default=0):.2f}s)"
        + (f"; first 202 {min(accepted_after):.1f}s after it was back" if accepted_after else "; no 202 after it")
        + f"; accepted tasks: {recovery.describe('it was back')}"
        + f"; {outcome.summary()}"
    )

    assert answers == {GOOD_OUTAGE_ANSWER: len(during)}
    assert outcome.faults() == NO_FAULTS
    # A run whose claim held through the outage waited for the database and went on: none was left to the
    # reaper's stale-heartbeat recovery, which would have run it again as attempt 2.
    tasks = stack.tasks()
    assert {task_id: tasks[task_id]["attempts"] for task_id in accepted} == dict.fromkeys(accepted, 1)


async def _stream_through_outage(stack: FaultStack, body: dict) -> tuple[list[SubmitResult], Outage]:
    """Submit every SUBMIT_EVERY seconds, each request on its own, and BACKLOG at once just before Postgres
    is stopped; then start it again."""
    limits = httpx.Limits(max_connections=int(HTTP_TIMEOUT / SUBMIT_EVERY) + 10)  # hung requests never queue others
    async with httpx.AsyncClient(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=HTTP_TIMEOUT, limits=limits
    ) as client:
        submits: list[asyncio.Task[SubmitResult]] = []

        async def stream(until: float) -> None:
            while time.monotonic() < until:
                submits.append(asyncio.create_task(post_detect(client, body)))
                await asyncio.sleep(SUBMIT_EVERY)

        streaming = asyncio.create_task(stream(time.monotonic() + STREAM_BEFORE + OUTAGE + STREAM_AFTER))
        await asyncio.sleep(STREAM_BEFORE)
        submits.extend(asyncio.create_task(post_detect(client, body)) for _ in range(BACKLOG))
        await asyncio.gather(*submits[-BACKLOG:])
        backlog = stack.redis.queued_messages(QUEUES)
        await asyncio.to_thread(stack.postgres.stop)
        down = time.monotonic()
        await asyncio.sleep(OUTAGE)
        restarting = time.monotonic()
        await asyncio.to_thread(stack.postgres.start)
        outage = Outage(backlog, down, restarting, time.monotonic())
        await streaming
        return list(await asyncio.gather(*submits)), outage


def _answer_kind(result: SubmitResult) -> str:
    if result.status is None:
        return f"no answer ({result.error})"
    timing = "in time" if result.latency <= ANSWER_TARGET else "slow"
    retry = "Retry-After" if result.headers.get("retry-after", "").isdigit() else "no Retry-After"
    shape = "native shape" if _is_native_error(result.body) else "other body"
    return f"{result.status} {timing}, {retry}, {shape}"


def _is_native_error(body: object) -> bool:
    """{"error": {"code", "message", "field"}}, as every native error answers."""
    return (
        isinstance(body, dict)
        and body.keys() == {"error"}
        and isinstance(body["error"], dict)
        and body["error"].keys() == {"code", "message", "field"}
    )
