"""Typed answers of the API. Every model keeps fields a newer server adds (`extra="allow"`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Progress(_Model):
    done: int
    total: int


class TaskError(_Model):
    code: str
    message: str


class Frame(_Model):
    """One frame of `faces_obj`, in Akool detect_faces' shape (see docs/api/tasks.md)."""

    landmarks: list[list[list[int]]]
    landmarks_str: list[str]
    region: list[list[int]]
    removed: list[list[int]]
    frame_time: float | None
    face_urls: list[str] | None = None
    crop_region: list[list[int]] | None = None
    crop_landmarks: list[str] | None = None


class MediaInfo(_Model):
    kind: str
    mime: str
    width: int
    height: int
    duration: float | None = None
    fps: float | None = None
    frame_count: int | None = None


class DetectorInfo(_Model):
    name: str
    model_version: str
    max_side: int


class FaceMatch(_Model):
    """A collection's face like a searched one; `similarity` 0..1 (the embeddings' cosine)."""

    face_id: str
    external_id: str | None
    similarity: float


class IndexedFace(_Model):
    frame: str  # the faces_obj key
    index: int  # the face's position in that frame's lists
    face_id: str


class UnindexedFace(_Model):
    frame: str
    index: int
    reason: str  # too_small | low_score | extreme_pose | blurry | exceeds_max_faces


class IndexReport(_Model):
    """A task's `result.index`, with the index option: which faces were indexed, and why the others were not."""

    collection_id: str
    external_id: str | None
    indexed: list[IndexedFace]
    unindexed: list[UnindexedFace]


class DetectResult(_Model):
    faces_obj: dict[str, Frame]
    scores: dict[str, list[float]]
    media: MediaInfo
    detector: DetectorInfo
    frame_count: int
    face_shape_set: dict[str, list[dict[str, Any]]] | None = None
    persons: list[dict[str, Any]] | None = None
    index: IndexReport | None = None  # with the index option
    # with the search option: each face's matches, best first, keyed and ordered like faces_obj
    matches: dict[str, list[list[FaceMatch]]] | None = None
    person_matches: dict[str, dict[str, Any]] | None = None  # with search and persons: by person_id


class Task(_Model):
    """A detection task. `detect` returns the accepted task (id and status); `get` and `wait` fill the rest."""

    detect_task_id: str
    status: str
    kind: str | None = None
    progress: Progress | None = None
    attempts: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    timings: dict[str, float] = {}
    detector: str | None = None
    model_version: str | None = None
    result: DetectResult | None = None
    error: TaskError | None = None
    # `wait`'s snapshots from the event stream: the frames finished so far, each as `result.faces_obj` will have it
    partial_faces_obj: dict[str, Frame] | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def progress_marker(self) -> tuple[Any, ...]:
        """What `wait` compares to tell a change worth reporting."""
        progress = self.progress or Progress(done=0, total=0)
        return self.status, progress.done, progress.total

    @property
    def ref(self) -> str:
        return f"task {self.detect_task_id}"


class TaskSummary(_Model):
    """A task as `list` shows it."""

    detect_task_id: str
    status: str
    kind: str | None
    created_at: datetime
    finished_at: datetime | None


class BatchAccepted(_Model):
    batch_id: str
    total: int


class BatchFailure(_Model):
    position: int
    detect_task_id: str
    name: str | None = None  # the item's name as submitted (servers before names: absent)
    error: dict[str, str]


class BatchStatus(_Model):
    batch_id: str
    status: str  # running | completed | canceled
    persons: bool = False  # submitted with persons=True (batch_persons); servers before it leave it out
    total: int
    counts: dict[str, int]
    progress: float
    eta_seconds: float | None
    created_at: datetime
    finished_at: datetime | None
    failures: list[BatchFailure]

    @property
    def is_final(self) -> bool:
        return self.status != "running"

    @property
    def progress_marker(self) -> tuple[Any, ...]:
        return self.status, tuple(sorted(self.counts.items()))

    @property
    def ref(self) -> str:
        return f"batch {self.batch_id}"


class BatchItemResult(_Model):
    """One line of a batch's results, in submit order."""

    position: int
    name: str | None = None  # the item's name as submitted (servers before names: absent)
    detect_task_id: str
    status: str
    result: DetectResult | None
    error: TaskError | None


class ItemMatch(FaceMatch):
    """A face of a batch item that matched a collection face, and where it is in the item's result."""

    frame: str  # the faces_obj key
    frame_time: float | None  # seconds from the start (video); None for an image
    index: int  # the face's position in that frame's lists


class BatchItemMatches(_Model):
    """One line of a batch's matches: an item run with the search option whose faces matched, in submit order."""

    position: int
    name: str | None = None  # the item's name as submitted
    detect_task_id: str
    matches: list[ItemMatch]  # by frame, then face, then similarity (best first)


class BatchPersonItem(_Model):
    """One item's person that a batch-wide person is."""

    position: int
    name: str | None = None  # the item's name as submitted
    detect_task_id: str
    person_id: str  # its id in the item's result (`persons`)
    time_ranges: list[list[float]]  # [first, last] seconds of each run of sampled frames it is in


class BatchPerson(_Model):
    """One line of a batch's persons (a batch submitted with persons=True): a batch-wide person, by first item."""

    batch_person_id: str
    items: list[BatchPersonItem]  # in submit order


class WebhookEventRecord(_Model):
    """An event the server sends (or sent) for a task, with its delivery state."""

    webhook_id: str
    type: str
    url: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime


class Delivery(_Model):
    """One attempt to deliver an event."""

    webhook_id: str
    attempt: int | None = None
    url: str | None = None
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    latency_ms: int | None = None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None


class DeliveryLog(_Model):
    detect_task_id: str
    events: list[WebhookEventRecord]
    items: list[Delivery]


class WebhookEndpoint(_Model):
    """The tenant's default webhook endpoint."""

    url: str | None
    secret_rotated_at: datetime | None = None
    previous_secret_expires_at: datetime | None = None


class WebhookSecret(_Model):
    """The tenant's current `whsec_` secret, which verifies its events (`verify_webhook`)."""

    secret: str


class RotatedSecret(_Model):
    """A new `whsec_` secret, shown once; the previous one keeps signing until `previous_secret_expires_at`."""

    secret: str
    previous_secret_expires_at: datetime | None = None


class WebhookEvent(_Model):
    """A verified event received by a webhook endpoint; `webhook_id` is stable across retries (deduplicate on it)."""

    webhook_id: str
    type: str
    timestamp: datetime
    data: dict[str, Any]


class IndexOptions(_Model):
    """`detect(..., index=)`: add the faces found to a collection (a dict with these keys does the same)."""

    collection_id: str
    external_id: str | None = None
    max_faces: int | None = None  # server default: 1, the largest face
    quality_filter: str | None = None  # none | low | auto | high; server default: auto


class SearchOptions(_Model):
    """`detect(..., search=)`: find each face found among a collection's faces (or a dict with these keys)."""

    collection_id: str
    threshold: float | None = None  # server default: 0.5
    max_matches: int | None = None  # server default: 5


class CollectionView(_Model):
    """A face collection (GET /v1/collections/{id})."""

    collection_id: str
    description: str | None
    face_count: int
    created_at: datetime


class Face(_Model):
    """A collection's indexed face; `face_url` is an expiring link to its crop."""

    face_id: str
    external_id: str | None
    detect_task_id: str | None  # the task that indexed it (since purged, maybe)
    frame: str
    region: list[int]  # [x, y, w, h]
    face_url: str | None
    created_at: datetime


class FaceSearchResult(_Model):
    """`search_faces`: the collection's other faces most like one of its own, best first."""

    face_id: str
    matches: list[FaceMatch]
