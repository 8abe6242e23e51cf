"""What happens once a task reaches a final status, whoever put it there (worker, API cancel, reaper).

Called in the same transaction that wrote the final status, right after it, so credits and the
webhook outbox move together with the status or not at all.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from facequeue.settings import get_settings
from workers.credits import settle_credits
from workers.webhooks import queue_task_event


def on_task_final(session: Session, task_id: str) -> None:
    """Settle or refund the task's credits and queue its webhook event."""
    settings = get_settings()

    settle_credits(session, task_id, settings)
    # The event row commits with the final status; its message is published after that commit.
    queue_task_event(session, task_id, settings)
