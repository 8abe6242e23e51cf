"""Redis restarts without persistence while 200 tasks are queued: every message is gone, and the
database, the source of truth, must bring all 200 back (issue 10, section 2.1)."""

from __future__ import annotations

import time

import pytest

from tests.faults.audit import NO_FAULTS, audit
from tests.faults.stack import QUEUES, FaultStack

pytestmark = pytest.mark.faults

QUEUED_TASKS = 200
RECOVERY_BOUND = 240.0  # seconds from the restart until all 200 are final; today's republish waits 900 s


def test_redis_restart_without_persistence_loses_no_queued_task(stack: FaultStack, media, measure) -> None:
    stack.worker.stop()  # so the tasks stay queued
    results = stack.submit_all([media.image_task()] * QUEUED_TASKS, concurrency=8)
    accepted = [result.task_id for result in results if result.status == 202]
    assert len(accepted) == QUEUED_TASKS, {result.status for result in results}
    assert stack.redis.queued_messages(QUEUES) == QUEUED_TASKS  # every message is in the broker, none taken

    stack.redis.restart_empty()
    assert stack.redis.client().dbsize() == 0
    restarted = time.monotonic()
    stack.start_worker()
    recovery = stack.wait_for_final(accepted, RECOVERY_BOUND, since=restarted)
    outcome = audit(stack, accepted)
    statuses = [task["status"] for task in stack.tasks().values()]
    measure(
        f"Redis restarted empty with {QUEUED_TASKS} tasks queued: "
        f"{recovery.describe('the restart')} ({statuses.count('queued')} still queued); "
        f"{outcome.summary()}"
    )

    assert outcome.faults() == NO_FAULTS
    assert statuses.count("succeeded") == QUEUED_TASKS
