"""One task's path through the worker: media -> frames -> detectors -> tracking -> results.

`run_detect_task` owns the task's lifecycle (claim, heartbeat, final status); `detect_media`
turns local media files into a `DetectResult`, frame by frame, so only one decoded frame is
held at a time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
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
from facequeue.schemas import (
    MAX_SAMPLED_FRAMES,
    Appearance,
    DetectOptions,
    DetectorInfo,
    DetectResult,
    MediaInfo,
    Person,
)
from facequeue.settings import Settings, get_settings
from facequeue.storage import MediaStorage, crop_key, get_storage
from workers.crops import crop_jpeg, expanded_region, relative_points
from workers.detectors.base import Face, detect_faces_tiled, largest_face
from workers.detectors.registry import FUSED_DETECTOR, get_detector, get_landmarkers
from workers.detectors.routing import detector_for
from workers.finalize import on_task_final
from workers.identity import persons as identity
from workers.identity.embedder import get_embedder
from workers.identity.tracking import FaceTracker, FrameDetections
from workers.media.fetch import fetch_to_file
from workers.media.image import decode_image
from workers.media.sniff import SniffedMedia, sniff
from workers.media.video import (
    SampledFrame,
    plan_indices_at_rate,
    plan_sample_indices,
    probe_video,
    sample_frames,
)
from workers.overlap import fetch_all, prefetched
from workers.results import face_frame, landmarks_str, six_points
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
        claimed = queries.claim_task(session, task_id)
    if claimed is None:
        log.info("detect_skipped", task_id=task_id, reason="not queued (canceled, finished or taken)")
        return
    attempt, params, source_url, upload_key = claimed

    started = time.perf_counter()
    timer = StageTimer()
    final: dict[str, Any]
    with RunControl(task_id, attempt, settings.heartbeat_interval) as control:
        try:
            options = DetectOptions.from_params(params)
            with tempfile.TemporaryDirectory(prefix="facequeue-") as workdir:
                paths = obtain_media(source_url, upload_key, options, Path(workdir), settings, timer)
                urls = options.frame_urls or ((source_url,) if source_url else ())
                result = detect_media(task_id, paths, urls, options, settings, control, timer)
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
        status, values = final.pop("status"), {**control.unwritten(), **final}
        written = queries.finish_task(session, task_id, attempt, status, timings=timer.timings, **values)
        if written:
            on_task_final(session, task_id)
    log.info("detect_finished", task_id=task_id, attempt=attempt, written=written, error=final.get("error_code"))


def obtain_media(
    source_url: str | None,
    upload_key: str | None,
    options: DetectOptions,
    workdir: Path,
    settings: Settings,
    timer: StageTimer,
) -> list[Path]:
    """Local files for the task's input: its frame_urls, its URL, or its stored upload."""
    started = time.perf_counter()
    try:
        urls = options.frame_urls or ((source_url,) if source_url else ())
        if urls:

            def fetch(position: int, url: str) -> Path:
                return fetch_to_file(url, _fresh_dir(workdir, position), settings).path

            return fetch_all(fetch, urls, settings.fetch_concurrency)
        try:
            return [get_storage(settings).fetch_to(upload_key or "", workdir)]
        except FileNotFoundError as error:
            raise TaskError(ErrorCode.DOWNLOAD_FAILED, "uploaded media is no longer stored") from error
    finally:
        timer.add("download", time.perf_counter() - started)


def _fresh_dir(workdir: Path, position: int) -> Path:
    path = workdir / f"input-{position}"
    path.mkdir()
    return path


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
    first = decode_image(paths[0], settings)
    media = MediaInfo(kind="image", mime=sniffed[0].mime, width=first.shape[1], height=first.shape[0])
    times = options.timestamps or (None,)

    def frames() -> Iterator[SampledFrame]:
        yield SampledFrame(index=0, time_s=times[0], image_bgr=first)
        for position, path in enumerate(paths[1:], start=1):
            yield SampledFrame(index=position, time_s=times[position], image_bgr=decode_image(path, settings))

    return FrameSource(media, frames(), len(paths))


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
) -> DetectResult:
    """`urls` are where the inputs came from (an upstream API that only takes URLs may use them)."""
    started = time.perf_counter()
    source = open_frames(paths, options, settings)
    timer.add("decode", time.perf_counter() - started)
    control.report(kind=source.media.kind, progress_total=source.total)
    video = source.media.kind == "video"
    analyzer = FrameAnalyzer(task_id, options, settings, get_storage(settings), video, () if video else urls)
    # Several frames: the next is decoded while this one is detected ("decode" then counts only the wait).
    done = 0
    with closing(prefetched(source.frames, settings.frame_prefetch if source.total > 1 else 0)) as frames:
        while True:
            started = time.perf_counter()
            frame = next(frames, None)
            timer.add("decode", time.perf_counter() - started)
            if frame is None:
                break
            started = time.perf_counter()
            analyzer.add(frame)
            timer.add("detect", time.perf_counter() - started)
            done += 1
            control.report(progress_done=done)
    if done == 0:
        raise TaskError(ErrorCode.NO_FRAMES, "no sampled frame could be decoded")
    started = time.perf_counter()
    result = analyzer.result(source.media)
    timer.add("detect", time.perf_counter() - started)
    return result


class FrameAnalyzer:
    """Detects faces frame by frame and keeps what the result needs; frames themselves are dropped."""

    def __init__(
        self,
        task_id: str,
        options: DetectOptions,
        settings: Settings,
        storage: MediaStorage,
        video: bool,
        frame_urls: tuple[str, ...],
    ):
        self.task_id = task_id
        self.options = options
        self.settings = settings
        self.storage = storage
        self.frame_urls = frame_urls
        self.max_side = options.max_side or settings.detector_max_side
        # 90-point shapes need FaceMesh on our own detections, and tiles our own detector: those stay local
        mode = "local" if options.landmarks == "90" or options.tiling else options.detector
        # Tiling always fuses BlazeFace in on the whole frame; elsewhere FACEQUEUE_DETECTOR_FUSION decides
        self.router = detector_for(mode, settings, local=get_detector(FUSED_DETECTOR if options.tiling else None))
        self.faces_obj: dict = {}
        self.scores: dict[str, list[float]] = {}
        self.crop_keys: dict[str, list[str]] | None = {} if options.return_face_url else None
        self.shapes: dict | None = {} if options.landmarks == "90" else None
        embed = get_embedder().embed if (video or (options.persons and len(options.frame_urls) > 1)) else None
        self.tracker = FaceTracker(embed, same_person=settings.person_match_threshold) if video else None
        self.stills = identity.StillFrames(embed, settings.person_match_threshold) if not video else None
        self.person_crops: dict[int, bytes] = {}  # id(face) -> JPEG of its expanded region

    def add(self, frame: SampledFrame) -> None:
        image = frame.image_bgr
        faces, shapes = self._faces(image, self.frame_urls[frame.index] if frame.index < len(self.frame_urls) else None)
        key = str(frame.index)
        entry = face_frame(faces, frame.time_s)
        self.scores[key] = [round(face.score, 4) for face in faces]
        if self.shapes is not None:
            self.shapes[key] = shapes
        if self.crop_keys is not None:
            entry = self._with_crops(key, entry, image, faces)
        timestamp = frame.time_s or 0.0
        if self.tracker is not None:
            tracks = self.tracker.update(FrameDetections(frame.index, timestamp, image, faces))
            entry = entry.model_copy(update={"removed": tracks.removed})
        elif self.options.persons:
            self.stills.add(frame.index, timestamp, image, faces)
        if self.options.persons:
            height, width = image.shape[:2]
            for face in faces:
                region = expanded_region(face, self.options.expand_ratio, width, height)
                self.person_crops[id(face)] = crop_jpeg(image, region)
        self.faces_obj[key] = entry

    def _faces(self, image, source_url: str | None) -> tuple[list[Face], list | None]:
        if self.options.landmarks != "90":
            if self.options.tiling:
                fused = self.router.local  # YuNet on the frame and its tiles, BlazeFace on the frame
                faces = detect_faces_tiled(fused.primary, image, self.max_side, fusion=fused.fusion)
            else:
                faces = self.router.detect(image, self.max_side, source_url)
            return (largest_face(faces) if self.options.single_face else faces), None
        from workers.landmarks.analyze import ALL_FACES, LARGEST_FACE, analyze_face_shapes
        from workers.landmarks.shape90 import face_shape
        from workers.landmarks.shape90 import six_points as refined_six_points

        mesh, iris = get_landmarkers()
        mode = LARGEST_FACE if self.options.single_face else ALL_FACES
        found = analyze_face_shapes(
            image, self.router.local, mesh, iris, mode, self.options.need_rotate_detection, self.max_side
        )
        # FaceMesh's eyes, nose and mouth are far closer to the truth than YuNet's (NME 0.06 vs 0.15)
        faces = [
            Face(shape.face.box, refined_six_points(shape.mesh.points, shape.pupils)[[0, 1, 2, 4, 5]], shape.face.score)
            for shape in found
        ]
        return faces, [face_shape(shape.mesh.points, shape.pupils) for shape in found]

    def _with_crops(self, key: str, entry, image, faces: list[Face]):
        height, width = image.shape[:2]
        regions, keys, relative = [], [], []
        for position, face in enumerate(faces):
            region = expanded_region(face, self.options.expand_ratio, width, height)
            storage_key = crop_key(self.task_id, f"frame-{key}-face-{position}")
            self.storage.put_bytes(storage_key, crop_jpeg(image, region), "image/jpeg")
            regions.append(region)
            keys.append(storage_key)
            relative.append(landmarks_str(relative_points(six_points(face), region)))
        self.crop_keys[key] = keys
        return entry.model_copy(update={"crop_region": regions, "crop_landmarks": relative})

    def _persons(self) -> list[Person] | None:
        if not self.options.persons:
            return None
        found = self.tracker.persons()[0] if self.tracker is not None else self.stills.persons()
        persons = []
        for person in found:
            storage_key = crop_key(self.task_id, person.person_id)
            self.storage.put_bytes(storage_key, self.person_crops[id(person.face.face)], "image/jpeg")
            persons.append(
                Person(
                    person_id=person.person_id,
                    index=person.index,
                    face_key=storage_key,
                    bbox=list(person.bbox),
                    confidence=round(person.confidence, 4),
                    appearances=[
                        Appearance(timestamp=a.timestamp, frame_idx=a.frame_idx, bbox=list(a.bbox))
                        for a in person.appearances
                    ],
                    first_seen=person.first_seen,
                    last_seen=person.last_seen,
                )
            )
        return persons

    def result(self, media: MediaInfo) -> DetectResult:
        return DetectResult(
            faces_obj=self.faces_obj,
            scores=self.scores,
            media=media,
            detector=DetectorInfo(
                name=self.router.served_by,
                model_version=self.router.model_version,
                max_side=self.max_side,
                upstream_frames=self.router.upstream_frames,
            ),
            frame_count=len(self.faces_obj),
            crop_keys=self.crop_keys,
            face_shape_set=self.shapes,
            persons=self._persons(),
        )
