"""One task's path through the worker: media -> frames -> detectors -> tracking -> results.

`run_detect_task` owns the task's run (claim, heartbeat, final status); `detect_media` turns
local media files into a `DetectResult`, frame by frame (`FrameAnalyzer`), so only one decoded
frame is held at a time.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from db import tasks
from db.engine import DATABASE_UNAVAILABLE
from facequeue.core.enums import TaskStatus
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.logs import bind_task_context
from facequeue.core.schemas import MAX_SAMPLED_FRAMES, DetectOptions, DetectResult, MediaInfo
from facequeue.core.settings import Settings
from facequeue.core.storage import get_storage
from facequeue.lifecycle import billing
from facequeue.plumbing import task_events
from facequeue.plumbing.broker import media_to_fetch
from facequeue.plumbing.sessions import session_scope
from workers.fetch_stage import pass_on
from workers.frame_analyzer import FrameAnalyzer, needs_file_pixels
from workers.media.image import ScaledImage, decode_image_scaled
from workers.media.sniff import SniffedMedia, sniff
from workers.media.staging import load_downloads
from workers.media.video import (
    SampledFrame,
    plan_indices_at_rate,
    plan_sample_indices,
    prefetched,
    probe_video,
    sample_frames,
)
from workers.metrics import DETECTOR_SECONDS, FRAMES_PROCESSED
from workers.preview_frames import PreviewFrames, previews_until
from workers.recognition import FaceRecognition
from workers.run_control import RunControl, TaskAbandoned, write_final

log = structlog.get_logger(__name__)


@dataclass
class StageTimer:
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + seconds, 4)


def run_detect_task(task_id: str, settings: Settings, worker_name: str) -> None:
    """Entry point for the Celery task: claim (as this pool process of `worker_name`), process, and write
    exactly one final status. A database that is away at the claim raises: the message is retried later."""
    with session_scope() as session:
        claimed = tasks.claim_task(session, task_id, worker_name, os.getpid())
    if claimed is None:
        log.info("detect_skipped", task_id=task_id, reason="not queued (canceled, finished or taken)")
        return
    attempt, params, source_url = claimed.attempt, claimed.params, claimed.source_url
    bind_task_context(task_id, claimed.tenant_id, attempt)
    if media_to_fetch(source_url, params, claimed.upload_key):
        # Not downloaded yet (a message from before the fetch stage): a CPU slot never waits on a server.
        event = "detect_sent_to_fetch" if pass_on(task_id, attempt, settings, fetch_first=True) else "detect_abandoned"
        log.info(event, task_id=task_id, attempt=attempt)
        return
    task_events.announce_status(task_id, TaskStatus.PROCESSING, settings)

    started = time.perf_counter()
    timer = StageTimer(claimed.timings)  # the fetch stage's download, for a task with URLs
    final: dict[str, Any]
    recognition: FaceRecognition | None = None
    with RunControl(task_id, attempt, settings) as control:
        try:
            options = DetectOptions.from_params(params)
            recognition = FaceRecognition.for_task(
                task_id, claimed.tenant_id, options, get_storage(settings), claimed.persons_batch_id
            )
            with tempfile.TemporaryDirectory(prefix="facequeue-") as workdir:
                paths = obtain_media(claimed.upload_key or "", options, Path(workdir), settings, timer)
                urls = options.frame_urls or ((source_url,) if source_url else ())
                result = detect_media(task_id, paths, urls, options, settings, control, timer, recognition)
            final = dict(
                status=TaskStatus.SUCCEEDED,
                result=result.model_dump(mode="json"),
                kind=result.media.kind,
                detector=result.detector.name,
                model_version=result.detector.model_version,
                previews_until=previews_until(settings) if result.preview_frames else None,
            )
        except TaskAbandoned:
            log.info("detect_abandoned", task_id=task_id, attempt=attempt)
            return
        except TaskError as error:
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
        except SoftTimeLimitExceeded:
            error = TaskError(ErrorCode.TIME_LIMIT_EXCEEDED)
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
        except DATABASE_UNAVAILABLE:
            raise  # the database is away: leave the row to the reaper rather than guess
        except Exception as exc:  # a bug must end the task, never strand it
            log.exception("detect_crashed", task_id=task_id)
            error = TaskError(ErrorCode.INTERNAL_ERROR, type(exc).__name__)
            final = dict(status=TaskStatus.FAILED, error_code=error.code, error_msg=error.message)
    timer.add("total", time.perf_counter() - started)
    status, values = final.pop("status"), {**control.unwritten(), **final}
    succeeded = recognition is not None and status == TaskStatus.SUCCEEDED
    writes = recognition.writes() if succeeded else None
    written = write_final(task_id, attempt, status, {"timings": timer.timings, **values}, settings, writes)
    if recognition is not None and not (written and succeeded):
        recognition.discard_crops()  # nothing was indexed: no crop may stay behind
    log.info("detect_finished", task_id=task_id, attempt=attempt, written=written, error=final.get("error_code"))


def obtain_media(
    upload_key: str, options: DetectOptions, workdir: Path, settings: Settings, timer: StageTimer
) -> list[Path]:
    """Local files for the task's input: its upload, or what the fetch stage downloaded from its URLs."""
    started = time.perf_counter()
    try:
        return load_downloads(upload_key, len(options.frame_urls), get_storage(settings), workdir)
    except FileNotFoundError as error:
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, "the media are no longer stored") from error
    finally:
        timer.add("download", time.perf_counter() - started)


@dataclass
class FrameSource:
    media: MediaInfo
    frames: Iterator[SampledFrame]
    total: int


def open_frames(paths: list[Path], options: DetectOptions, settings: Settings) -> FrameSource:
    """Images give one frame each (frame_urls: one per URL); a video gives its sampled frames."""
    sniffed = [sniff(path) for path in paths]
    kind = resolve_kind(options.media_type, sniffed[0])
    if kind == "video" and len(paths) == 1:
        info = probe_video(paths[0], settings)
        if options.sample_fps:
            indices = plan_indices_at_rate(info.frame_count, info.fps, options.sample_fps, MAX_SAMPLED_FRAMES)
        else:
            indices = plan_sample_indices(info.frame_count, options.num_frames)
        media = MediaInfo(
            kind="video",
            mime=sniffed[0].mime,
            width=info.width,
            height=info.height,
            duration=info.duration_s,
            fps=info.fps,
            frame_count=info.frame_count,
        )
        return FrameSource(media, sample_frames(paths[0], info, indices, settings), len(indices))
    for position, media in enumerate(sniffed):
        if resolve_kind("image", media) != "image":
            raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, f"frame {position} is {media.mime}, not an image")
    # A JPEG is decoded reduced to about the detector's working size (memory per task, docs/architecture.md) unless the
    # analysis needs the file's pixels; results are mapped back to them.
    working_side = None if needs_file_pixels(options) else options.max_side or settings.detector_max_side
    first = decode_image_scaled(paths[0], settings, working_side)
    media = MediaInfo(kind="image", mime=sniffed[0].mime, width=first.width, height=first.height)
    times = options.timestamps or (None,)

    def frames() -> Iterator[SampledFrame]:
        yield _still_frame(0, times[0], first)
        for position, path in enumerate(paths[1:], start=1):
            yield _still_frame(position, times[position], decode_image_scaled(path, settings, working_side))

    return FrameSource(media, frames(), len(paths))


def _still_frame(index: int, time_s: float | None, decoded: ScaledImage) -> SampledFrame:
    return SampledFrame(index, time_s, decoded.image_bgr, decoded.scale, (decoded.width, decoded.height))


def resolve_kind(requested: str, sniffed: SniffedMedia) -> str:
    """The bytes decide; an explicit media_type may only narrow an animated image to its first frame."""
    if requested == "auto":
        return sniffed.kind
    if requested == "image" and sniffed.animated:
        return "image"
    if requested != sniffed.kind:
        raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, f"media_type is {requested} but the bytes are {sniffed.mime}")
    return requested


def detect_media(
    task_id: str,
    paths: list[Path],
    urls: tuple[str, ...],
    options: DetectOptions,
    settings: Settings,
    control: RunControl,
    timer: StageTimer,
    recognition: FaceRecognition | None = None,
) -> DetectResult:
    """`urls` are where the inputs came from (an upstream API that only takes URLs may use them); `recognition`
    embeds the faces for the index and search options."""
    started = time.perf_counter()
    source = open_frames(paths, options, settings)
    timer.add("decode", time.perf_counter() - started)
    control.report(kind=source.media.kind, progress_total=source.total)
    # The submit priced what the URL's extension hinted at; the bytes price the run (a video named .jpg).
    control.pay_for(billing.frames_cost(source.total, options, settings), source.media.kind)
    video = source.media.kind == "video"
    analyzer = FrameAnalyzer(
        task_id, options, settings, get_storage(settings), video, () if video else urls, recognition
    )
    previews = PreviewFrames(task_id, get_storage(settings), settings)
    # Several frames: the next are decoded while these are detected ("decode" then counts only the wait). A video's
    # go through the model FACEQUEUE_FRAME_BATCH at a time.
    batch = settings.frame_batch if video else 1
    ahead = max(settings.frame_prefetch, batch) if source.total > 1 else 0
    done = 0
    with closing(prefetched(source.frames, ahead)) as frames:
        while True:
            started = time.perf_counter()
            taken = list(islice(frames, batch))
            timer.add("decode", time.perf_counter() - started)
            if not taken:
                break
            started = time.perf_counter()
            analyzer.add_frames(taken)
            detected_in = time.perf_counter() - started
            timer.add("detect", detected_in)
            for _ in taken:
                DETECTOR_SECONDS.observe(detected_in / len(taken))
            FRAMES_PROCESSED.labels(source.media.kind).inc(len(taken))
            for frame in taken:
                done += 1
                started = time.perf_counter()
                key = str(frame.index)
                previews.keep(key, frame.image_bgr, frame.size[0])
                timer.add("detect", time.perf_counter() - started)
                _announce_frame(task_id, done, source.total, key, analyzer, settings)
                control.report(progress_done=done)
    if done == 0:
        raise TaskError(ErrorCode.NO_FRAMES, "no sampled frame could be decoded")
    started = time.perf_counter()
    result = analyzer.result(source.media).model_copy(update={"preview_frames": previews.store()})
    timer.add("detect", time.perf_counter() - started)
    return result


def _announce_frame(task_id: str, done: int, total: int, key: str, analyzer: FrameAnalyzer, settings: Settings) -> None:
    """The frame's faces_obj entry as it will be in the result, for the task's live event streams."""
    crop_keys = analyzer.crop_keys.get(key) if analyzer.crop_keys is not None else None
    entry = analyzer.faces_obj[key].model_dump(mode="json")
    task_events.announce_frame(task_id, done, total, key, entry, analyzer.scores[key], crop_keys, settings)
