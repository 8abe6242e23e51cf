"""What every fault test checks once the service has recovered: the issue's five counts must be zero."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from tests.faults.stack import INITIAL_CREDITS, FaultStack
from tests.support import FINAL_STATUSES

WEBHOOK_BOUND = 30.0  # deliveries queue behind detection (lower priority); the receiver always answers 204
NO_FAULTS = {
    "lost": 0,
    "finished_twice": 0,
    "overcharged_credits": 0,
    "webhooks_for_unfinished": 0,
    "stuck_processing": 0,
}


@dataclass
class Audit:
    lost: list[str]  # accepted (202) but not final when the wait gave up (the test's bound, or no task moving)
    finished_twice: list[str]  # more than one final event: two outbox rows, or two webhook-ids received
    overcharged_credits: int  # spent beyond what succeeded tasks used plus what live tasks hold
    webhooks_for_unfinished: list[str]  # an event for a task that is not final, or final with another status
    stuck_processing: list[str]
    stuck_queued: list[str]  # every row, accepted or not (a 202 lost with a killed API still has one)
    webhooks_missing: list[str]  # final, yet no event arrived within WEBHOOK_BOUND
    webhooks_rejected: int  # deliveries whose signature did not verify with the tenant's secret

    def faults(self) -> dict[str, int]:
        return {
            "lost": len(self.lost),
            "finished_twice": len(self.finished_twice),
            "overcharged_credits": self.overcharged_credits,
            "webhooks_for_unfinished": len(self.webhooks_for_unfinished),
            "stuck_processing": len(self.stuck_processing),
        }

    def summary(self) -> str:
        extra = (
            f"stuck_queued={len(self.stuck_queued)} webhooks_missing={len(self.webhooks_missing)}"
            f" webhooks_rejected={self.webhooks_rejected}"
        )
        return " ".join(f"{name}={count}" for name, count in self.faults().items()) + " " + extra


def audit(stack: FaultStack, accepted: Iterable[str]) -> Audit:
    accepted = list(accepted)
    _wait_for_webhooks(stack)
    tasks = stack.tasks()
    received = stack.receiver.webhook_ids_by_task()
    with stack.db() as connection:
        outbox = {
            row["task_id"]: row["events"]
            for row in connection.execute("SELECT task_id, count(*) AS events FROM webhook_events GROUP BY task_id")
        }
        balance = connection.execute("SELECT credits FROM tenants WHERE id = %s", (stack.tenant_id,)).fetchone()
    # Local detection costs one credit per analysed frame; a live task holds its whole reservation.
    expected_spent = sum(
        (task["frame_count"] if task["status"] == "succeeded" else 0)
        + (task["cost"] if task["credit_state"] == "reserved" else 0)
        for task in tasks.values()
    )
    final = {task_id for task_id, task in tasks.items() if task["status"] in FINAL_STATUSES}
    return Audit(
        lost=[task_id for task_id in accepted if task_id not in final],
        finished_twice=sorted(
            task_id for task_id in tasks if outbox.get(task_id, 0) > 1 or len(received.get(task_id, ())) > 1
        ),
        overcharged_credits=(INITIAL_CREDITS - balance["credits"]) - expected_spent,
        webhooks_for_unfinished=sorted(
            {
                event.task_id
                for event in stack.receiver.events
                if event.task_id not in final or tasks[event.task_id]["status"] != event.status
            }
        ),
        stuck_processing=sorted(task_id for task_id, task in tasks.items() if task["status"] == "processing"),
        stuck_queued=sorted(task_id for task_id, task in tasks.items() if task["status"] == "queued"),
        webhooks_missing=sorted(final - received.keys()),
        webhooks_rejected=stack.receiver.rejected,
    )


def _wait_for_webhooks(stack: FaultStack) -> None:
    deadline = time.monotonic() + WEBHOOK_BOUND
    while time.monotonic() < deadline:
        final = {task_id for task_id, task in stack.tasks().items() if task["status"] in FINAL_STATUSES}
        if final <= stack.receiver.webhook_ids_by_task().keys():
            return
        time.sleep(0.5)
