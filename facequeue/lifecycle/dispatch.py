"""Fair dispatch of batch items.

Batch items are stored held (queued, not published). Each tenant may have at most
FACEQUEUE_TENANT_MAX_IN_FLIGHT items published or running at once; the dispatcher tops every
tenant up to that cap, longest-waiting tenant first. So one tenant's 5,000 items never form a
wall in front of another tenant's, and the `batch` queue stays short: single tasks (queue
`default`) and synchronous calls (`interactive`) are consumed first by every worker anyway.

It runs after a batch is created, whenever a batch item ends (for that tenant), and on every
reaper pass; duplicate publishes are harmless (only one run can claim a task).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import batches
from facequeue.core.settings import Settings
from facequeue.lifecycle.publish import publish_held


def dispatch(session: Session, settings: Settings, tenant_ids: list[str | None] | None = None) -> int:
    """Publish held batch items up to each tenant's cap; returns how many. The caller commits."""
    published = 0
    for tenant_id in batches.tenants_with_held_items(session) if tenant_ids is None else tenant_ids:
        room = settings.tenant_max_in_flight - batches.in_flight_count(session, tenant_id)
        if room <= 0:
            continue
        for task_id, kind in batches.next_held_items(session, tenant_id, room):
            publish_held(session, task_id, kind, settings)
            published += 1
    return published
