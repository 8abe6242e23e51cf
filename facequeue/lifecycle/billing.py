"""Credits, start to end: the estimate reserved on submit, the worker's top-up, and the settlement.

A task reserves the most it can cost when it is stored (in the same transaction, so both commit
or neither). The URL's extension only hints at the media: once the worker has read the bytes, it
raises the reservation to the real worst case before any frame runs, or fails the task. When it is
final, a success is charged what it used (at most the reservation) and the rest is refunded, and
anything else is refunded in full. Only tasks of a tenant carry credits.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db import credits
from db.models import DetectTask
from facequeue.core.enums import CreditState, TaskStatus
from facequeue.core.media_kinds import kind_from_extension
from facequeue.core.schemas import MAX_SAMPLED_FRAMES, UPSTREAM_DETECTOR_MODES, DetectOptions, DetectResult
from facequeue.core.settings import Settings

LOCAL_FRAME_CREDITS = 1  # a frame our own detectors serve; FACEQUEUE_UPSTREAM_CREDIT_COST prices the others


def kind_hint(options: DetectOptions, url: str | None) -> str | None:
    """The media kind before any byte is read: the requested media_type, else the URL's extension."""
    if options.media_type != "auto":
        return options.media_type
    if url is not None:
        return kind_from_extension(url)
    return None


def estimated_cost(options: DetectOptions, kind: str | None, settings: Settings) -> int:
    """Credits reserved on submit: the most the task can cost (an unknown kind may be a video);
    the worker's outcome settles it and refunds the rest."""
    video_frames = MAX_SAMPLED_FRAMES if options.sample_fps else options.num_frames
    return frames_cost(len(options.frame_urls) or (1 if kind == "image" else video_frames), options, settings)


def frames_cost(frames: int, options: DetectOptions, settings: Settings) -> int:
    """The most `frames` frames can cost: on submit, the frames the options allow; in the worker, the
    frames it will sample once the bytes have said what the media is."""
    if options.detector in UPSTREAM_DETECTOR_MODES:
        return frames * _upstream_frame_credits(settings)
    return frames * LOCAL_FRAME_CREDITS  # local, accurate, or None: the service default, local either way


def actual_cost(result: DetectResult, settings: Settings) -> int:
    upstream_frames = result.detector.upstream_frames
    local_frames = result.frame_count - upstream_frames
    return local_frames * LOCAL_FRAME_CREDITS + upstream_frames * _upstream_frame_credits(settings)


def _upstream_frame_credits(settings: Settings) -> int:
    return max(1, settings.upstream_credit_cost)


def reserve(session: Session, tenant_id: str, cost: int) -> bool:
    """Take `cost` from the tenant's balance; False when it does not cover it. The caller commits."""
    return credits.reserve(session, tenant_id, cost)


def top_up(session: Session, task_id: str, attempt: int, cost: int) -> credits.TopUp | None:
    """Raise a running task's reservation to `cost` (its worst case, known once the worker has read the
    media), taking the difference from the balance as a submit does. None when `attempt` no longer owns
    the task. The caller commits."""
    return credits.top_up(session, task_id, attempt, cost)


def settle(session: Session, task_id: str, settings: Settings) -> None:
    """Succeeded: charge what was used and refund the rest of the reservation; otherwise refund it all."""
    task = session.get(DetectTask, task_id)
    if task is None or task.credit_state != CreditState.RESERVED:
        return
    if task.status == TaskStatus.SUCCEEDED and task.result is not None:
        used = actual_cost(DetectResult.model_validate(task.result), settings)
        credits.close(session, task_id, CreditState.SETTLED, used)
    else:
        refund(session, task)


def refund(session: Session, task: DetectTask) -> None:
    credits.close(session, task.id, CreditState.REFUNDED, used=0)
