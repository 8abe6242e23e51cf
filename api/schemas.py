"""Request and response models of the native v1 API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from db.models import DetectTask, TaskStatus
from facequeue.schemas import MAX_SAMPLED_FRAMES, Appearance, Corners, DetectorInfo, FaceFrame, FaceShape, MediaInfo


class DetectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="Image or video URL; wins over img when both are given")
    img: str | None = Field(None, description="Base64 image or video bytes, plain or as a data URI")
    frame_urls: list[str] | None = Field(None, description="Several still frames (analyze_frames input)")
    timestamps: list[float] | None = Field(None, description="Seconds per frame_urls entry; default 0.0, 1.0, ...")
    media_type: Literal["auto", "image", "video"] = Field("auto", description="auto: decided by sniffing the bytes")
    num_frames: int = Field(5, ge=1, le=MAX_SAMPLED_FRAMES, description="Frames sampled evenly over a video")
    sample_fps: float | None = Field(
        None, gt=0, le=60, description=f"Instead of num_frames: frames per second, at most {MAX_SAMPLED_FRAMES} in all"
    )
    single_face: bool = Field(False, description="Keep only the largest face per frame")
    max_side: int | None = Field(None, ge=64, le=8192, description="Detector working long side (downscale only)")
    return_face_url: bool = Field(False, description="Crop every face and return links, crop_region, crop_landmarks")
    expand_ratio: float = Field(0.3, ge=0, le=1, description="Crop expansion on each side, as a share of the box")
    landmarks: Literal["6", "90"] = Field("6", description='"90" adds the Tencent-style 90-point face_shape_set')
    persons: bool = Field(False, description="Group faces into persons across frames (tracking + embeddings)")
    need_rotate_detection: bool = Field(False, description="Try 90/180/270 degrees when no upright face is found")
    tiling: bool = Field(False, description="Add native-resolution 640 px tiles to find small faces (crowds)")
    detector: Literal["local", "upstream", "auto"] = Field(
        "local", description="local YuNet, the configured upstream face API, or upstream while it is healthy"
    )


class DetectAccepted(BaseModel):
    detect_task_id: str
    status: TaskStatus


class Progress(BaseModel):
    done: int
    total: int


class TaskError(BaseModel):
    code: str
    message: str


class PersonView(BaseModel):
    person_id: str
    index: int
    face_url: str | None
    bbox: Corners
    confidence: float
    appearances: list[Appearance]
    first_seen: float
    last_seen: float


class DetectResultView(BaseModel):
    faces_obj: dict[str, FaceFrame]
    scores: dict[str, list[float]]
    media: MediaInfo
    detector: DetectorInfo
    frame_count: int
    face_shape_set: dict[str, list[FaceShape]] | None
    persons: list[PersonView] | None


class DetectTaskView(BaseModel):
    detect_task_id: str
    status: TaskStatus
    kind: str | None
    progress: Progress
    attempts: int
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    timings: dict[str, float]
    detector: str | None
    model_version: str | None
    result: DetectResultView | None
    error: TaskError | None

    @classmethod
    def of(cls, task: DetectTask, result: DetectResultView | None) -> DetectTaskView:
        return cls(
            detect_task_id=task.id,
            status=task.status,
            kind=task.kind,
            progress=Progress(done=task.progress_done, total=task.progress_total),
            attempts=task.attempts,
            created_at=task.created_at,
            started_at=task.started_at,
            heartbeat_at=task.heartbeat_at,
            finished_at=task.finished_at,
            timings=task.timings or {},
            detector=task.detector,
            model_version=task.model_version,
            result=result,
            error=TaskError(code=task.error_code, message=task.error_msg or "") if task.error_code else None,
        )


class DetectTaskSummary(BaseModel):
    detect_task_id: str
    status: TaskStatus
    kind: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, task: DetectTask) -> DetectTaskSummary:
        return cls(
            detect_task_id=task.id,
            status=task.status,
            kind=task.kind,
            created_at=task.created_at,
            finished_at=task.finished_at,
        )


class DetectTaskPage(BaseModel):
    items: list[DetectTaskSummary]
    next_cursor: str | None
