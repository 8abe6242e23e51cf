"""Settling a task's reserved credits once it is final."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import tenants
from db.models import DetectTask, TaskStatus
from facequeue.schemas import DetectResult
from facequeue.settings import Settings


def settle_credits(session: Session, task_id: str, settings: Settings) -> None:
    """Succeeded: charge what was used and refund the rest of the reservation; otherwise refund it all."""
    task = session.get(DetectTask, task_id)
    if task is None or task.credit_state != "reserved":
        return
    if task.status == TaskStatus.SUCCEEDED and task.result is not None:
        used = min(task.cost, actual_cost(DetectResult.model_validate(task.result), settings))
        tenants.close_credits(session, task_id, "settled", task.cost - used)
    else:
        tenants.close_credits(session, task_id, "refunded", task.cost)


def actual_cost(result: DetectResult, settings: Settings) -> int:
    upstream_frames = result.detector.upstream_frames
    return (result.frame_count - upstream_frames) + upstream_frames * max(1, settings.upstream_credit_cost)
