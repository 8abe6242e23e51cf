"""Deleting the frames kept for annotated previews once FACEQUEUE_PREVIEW_TTL has passed (a reaper step).

The frames and the previews drawn from them live under the task's previews prefix in storage; the task's
`previews_until` says until when. Deleting a task deletes them with the rest of its media at once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import tasks
from db.models import utcnow
from facequeue.core.settings import Settings
from facequeue.core.storage import get_storage, previews_prefix


def purge_expired_previews(session: Session, settings: Settings) -> int:
    """Delete the preview frames whose time is up, then clear their mark (a pass cut short in between only
    deletes them again). The caller commits."""
    expired = tasks.expired_previews(session, utcnow())
    storage = get_storage(settings)
    for task_id in expired:
        storage.delete_prefix(previews_prefix(task_id))
    if expired:
        tasks.forget_previews(session, expired)
    return len(expired)
