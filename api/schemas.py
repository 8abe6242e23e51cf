"""Request and response models of the native v1 API (detect tasks, batches, webhook deliveries)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from db.models import DetectTask
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import (
    ITEM_NAME_MAX_LENGTH,
    MAX_SAMPLED_FRAMES,
    TIMING_STAGES,
    Appearance,
    Corners,
    DetectOptions,
    DetectOptionsBase,
    DetectorInfo,
    FaceFrame,
    FaceMatch,
    FaceShape,
    IndexReport,
    MediaInfo,
    PersonMatches,
    RecognitionOptions,
)

URL_MAX_LENGTH = 2048  # webhook URLs (callback_url, the tenant endpoint): what browsers and proxies reliably carry


class MediaInput(BaseModel):
    url: str | None = Field(None, description="Image or video URL; wins over img when both are given")
    img: str | None = Field(None, description="Base64 image or video bytes, plain or as a data URI")


class FrameListInput(BaseModel):
    # as many frames as num_frames may sample from a video: each one is downloaded and detected
    frame_urls: list[str] | None = Field(
        None, max_length=MAX_SAMPLED_FRAMES, description="Several still frames (analyze_frames input), at most 100"
    )
    timestamps: list[float] | None = Field(
        None, max_length=MAX_SAMPLED_FRAMES, description="Seconds per frame_urls entry; default 0.0, 1.0, ..."
    )


class DetectCreate(RecognitionOptions, DetectOptionsBase, FrameListInput, MediaInput):
    """A detection's media and options: a batch item, and the core of POST /v1/detect's body."""

    model_config = ConfigDict(extra="forbid")

    def options(self) -> DetectOptions:
        return DetectOptions(
            **self.model_dump(exclude={"url", "img", "frame_urls", "timestamps", "callback_url", "name"}),
            frame_urls=tuple(self.frame_urls or ()),
            timestamps=tuple(self.timestamps or ()),
        )


class CallbackInput(BaseModel):
    callback_url: str | None = Field(
        None, max_length=URL_MAX_LENGTH, description="Where this task's webhook goes, instead of the tenant's endpoint"
    )


class DetectRequest(DetectCreate, CallbackInput):
    """POST /v1/detect's body. Batch items have no callback_url: their batch sends one event for all."""


class DetectUploadQuery(DetectOptionsBase, CallbackInput):
    """POST /v1/detect's query string when the body is the file itself (api/uploads.py): the JSON body's options
    and callback_url, by the same names."""

    model_config = ConfigDict(extra="forbid")

    def options(self) -> DetectOptions:
        return DetectOptions(**self.model_dump(exclude={"callback_url"}))


class BatchItemCreate(DetectCreate):
    """A batch item: a detection, and optionally the name its results and failures carry."""

    name: str | None = Field(
        None,
        max_length=ITEM_NAME_MAX_LENGTH,
        description="What this item is to you (a file path, a URL, a manifest entry), echoed as `name` in the "
        f"batch's results and failures; at most {ITEM_NAME_MAX_LENGTH} characters",
    )


class DetectAccepted(BaseModel):
    detect_task_id: str
    status: TaskStatus


class Progress(BaseModel):
    done: int
    total: int


class TaskErrorView(BaseModel):
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
    index: IndexReport | None = None
    matches: dict[str, list[list[FaceMatch]]] | None = None
    person_matches: dict[str, PersonMatches] | None = None


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
    error: TaskErrorView | None

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
            timings=_in_stage_order(task.timings or {}),
            detector=task.detector,
            model_version=task.model_version,
            result=result,
            error=TaskErrorView(code=task.error_code, message=task.error_msg or "") if task.error_code else None,
        )


class DetectTaskSummary(BaseModel):
    detect_task_id: str
    status: TaskStatus
    kind: str | None
    source: str | None = Field(
        description="What the task was made from, to tell tasks apart: a batch item's name, else the last "
        "part of its media URL's path (its host when the path has none); null for uploaded bytes"
    )
    faces: int | None = Field(description="Faces found, over every frame; null until the task has a result")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, task: DetectTask) -> DetectTaskSummary:
        return cls(
            detect_task_id=task.id,
            status=task.status,
            kind=task.kind,
            source=task.item_name or _url_tail(task.source_url),
            faces=sum(len(frame["region"]) for frame in task.result["faces_obj"].values()) if task.result else None,
            created_at=task.created_at,
            finished_at=task.finished_at,
        )


def _url_tail(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]) or parts.hostname


class DetectTaskPage(BaseModel):
    items: list[DetectTaskSummary]
    next_cursor: str | None


class BatchAccepted(BaseModel):
    batch_id: str
    total: int


class BatchFailure(BaseModel):
    position: int
    name: str | None = Field(description="The item's name, as given when it was submitted")
    detect_task_id: str
    error: dict[str, str]


class BatchView(BaseModel):
    batch_id: str
    status: str  # running | completed | canceled
    persons: bool = Field(description="submitted with persons: true (GET /v1/batches/{batch_id}/persons)")
    total: int
    counts: dict[str, int]
    progress: float
    eta_seconds: float | None
    created_at: datetime
    finished_at: datetime | None
    failures: list[BatchFailure]


class WebhookEventView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    webhook_id: str = Field(validation_alias="id")
    type: str
    url: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime


class DeliveryView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    webhook_id: str = Field(validation_alias="event_id")
    attempt: int
    url: str
    status_code: int | None
    error: str | None
    response_body: str | None
    latency_ms: int
    created_at: datetime
    next_attempt_at: datetime | None


class DeliveryLog(BaseModel):
    detect_task_id: str
    events: list[WebhookEventView]
    items: list[DeliveryView]


class RecentDeliveryView(DeliveryView):
    """An attempt in GET /v1/deliveries: what it is about (a task or a batch) and its event's type and state."""

    model_config = ConfigDict(populate_by_name=True)  # built from a DeliveryView's fields, webhook_id by name

    event_type: str
    event_state: str
    detect_task_id: str | None
    batch_id: str | None


class RecentDeliveryPage(BaseModel):
    items: list[RecentDeliveryView]
    next_cursor: str | None


def _in_stage_order(timings: dict[str, float]) -> dict[str, float]:
    """The stages as they ran (TIMING_STAGES), then any other name in name order."""
    rank = {stage: index for index, stage in enumerate(TIMING_STAGES)}
    return dict(sorted(timings.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0])))
