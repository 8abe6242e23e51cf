"""One task's path through the worker: media -> frames -> detector -> result.

`run_detect_task` owns the task's lifecycle (claim, heartbeat, final status);
`detect_media` is the pure part: a local media file in, a `DetectResult` out.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from db import queries
from db.engine import session_scope
from db.models import TaskStatus
from facequeue.errors import ErrorCode, TaskError
from facequeue.schemas import DetectorInfo, DetectResult, MediaInfo
from facequeue.settings import Settings, get_settings
from facequeue.storage import get_storage
from workers.detectors.base import FaceDetector, detect_faces, largest_face
from workers.detectors.registry import get_detector
from workers.media.fetch import fetch_to_file
from workers.media.image import decode_image
from workers.media.sniff import SniffedMedia, sniff
from workers.media.video import SampledFrame, plan_sample_indices, probe_video, sample_frames
from workers.results import face_frame
from workers.run_control import RunControl, TaskAbandoned

log = structlog.get_logger(__name__)


@dataclass
class StageTimer:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 4)


def run_detect_task(task_id: str) -> None:
    """Entry point for the Celery task: claim, process, and write exactly one final status."""
    settings = get_settings()
    with session_scope() as session:
        task = queries.claim_task(session, task_id)
        if task is None:
            log.info("detect_skipped", task_id=task_id, reason="not queued (canceled, finished or taken)")
            return
        attempt, params, source_url, upload_key = task.attempts, dict(task.params), task.source_url, task.upload_key

    started = time.perf_counter()
    timer = StageTimer()
    final: dict[str, Any]
    with RunControl(task_id, attempt, settings.heartbeat_interval) as control:
        try:
            with tempfile.TemporaryDirectory(prefix="facequeue-") as workdir:
                media_path = obtain_media(source_url, upload_key, Path(workdir), settings, timer)
                result = detect_media(media_path, params, settings, get_detector(), control, timer)
            final = dict(
                status=TaskStatus.SUCCEEDED,
                result=result.model_dump(mode="json"),
                kind=result.media.kind,
                detector=result.detector.name,
                model_version=result.detector.model_version,
            )
        except TaskAbandoned:
            log.info("detect_abandoned", task_id=task_id, attempt=attempt)
            return
        except TaskError as error:
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
        except SoftTimeLimitExceeded:
            error = TaskError(ErrorCode.TIME_LIMIT_EXCEEDED)
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
        except OperationalError:
            raise  # the database is away: leave the row to the reaper rather than guess
        except Exception as exc:  # a bug must end the task, never strand it
            log.exception("detect_crashed", task_id=task_id)
            error = TaskError(ErrorCode.INTERNAL_ERROR, type(exc).__name__)
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
    timer.add("total", time.perf_counter() - started)
    with session_scope() as session:
        written = queries.finish_task(session, task_id, attempt, final.pop("status"), timings=timer.timings, **final)
    log.info("detect_finished", task_id=task_id, attempt=attempt, written=written, error=final.get("error_code"))


def obtain_media(
    source_url: str | None, upload_key: str | None, workdir: Path, settings: Settings, timer: StageTimer
) -> Path:
    started = time.perf_counter()
    try:
        if source_url:
            return fetch_to_file(source_url, workdir, settings).path
        try:
            return get_storage(settings).local_path(upload_key or "")
        except FileNotFoundError as error:
            raise TaskError(ErrorCode.DOWNLOAD_FAILED, "uploaded media is no longer stored") from error
    finally:
        timer.add("download", time.perf_counter() - started)


def detect_media(
    path: Path,
    params: dict[str, Any],
    settings: Settings,
    detector: FaceDetector,
    control: RunControl,
    timer: StageTimer,
) -> DetectResult:
    sniffed = sniff(path)
    kind = resolve_kind(params.get("media_type", "auto"), sniffed)
    max_side = int(params.get("max_side") or settings.detector_max_side)
    faces_obj, scores = {}, {}

    started = time.perf_counter()
    if kind == "image":
        image = decode_image(path, settings)
        media = MediaInfo(kind="image", mime=sniffed.mime, width=image.shape[1], height=image.shape[0])
        frames: Iterator[SampledFrame] = iter([SampledFrame(index=0, time_s=None, image_bgr=image)])
        total = 1
    else:
        info = probe_video(path, settings)
        indices = plan_sample_indices(info.frame_count, int(params.get("num_frames", 5)))
        media = MediaInfo(
            kind="video",
            mime=sniffed.mime,
            width=info.width,
            height=info.height,
            duration=info.duration_s,
            fps=info.fps,
            frame_count=info.frame_count,
        )
        frames = sample_frames(path, info, indices, settings)
        total = len(indices)
    timer.add("decode", time.perf_counter() - started)
    control.report(force=True, kind=kind, progress_total=total)

    done = 0
    while True:
        started = time.perf_counter()
        frame = next(frames, None)
        timer.add("decode", time.perf_counter() - started)
        if frame is None:
            break
        started = time.perf_counter()
        faces = detect_faces(detector, frame.image_bgr, max_side)
        if params.get("single_face"):
            faces = largest_face(faces)
        timer.add("detect", time.perf_counter() - started)
        key = str(frame.index)
        faces_obj[key] = face_frame(faces, None if frame.time_s is None else round(frame.time_s, 4))
        scores[key] = [round(face.score, 4) for face in faces]
        done += 1
        control.report(progress_done=done)
    if not faces_obj:
        raise TaskError(ErrorCode.NO_FRAMES, "no sampled frame could be decoded")
    control.report(force=True, progress_done=done)
    return DetectResult(
        faces_obj=faces_obj,
        scores=scores,
        media=media,
        detector=DetectorInfo(name=detector.name, model_version=detector.model_version, max_side=max_side),
    )


def resolve_kind(requested: str, sniffed: SniffedMedia) -> str:
    """The bytes decide; an explicit media_type may only narrow an animated image to its first frame."""
    if requested == "auto":
        return sniffed.kind
    if requested == "image" and sniffed.animated:
        return "image"
    if requested != sniffed.kind:
        raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, f"media_type is {requested} but the bytes are {sniffed.mime}")
    return requested
