"""One example per schema of the document, by schema name (api/openapi/document.py puts each in place).

Examples are model instances, so pydantic checks them against their model here; the compat requests,
whose models live in their routers, are the seed documents' own request examples, and
tests/test_openapi.py validates every example against its schema in the document.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from api.openapi import shapes
from api.openapi.collection_examples import COLLECTION_INSTANCES, INDEX_REPORT, MATCH
from api.openapi.responses import EXAMPLE_BATCH_ID, EXAMPLE_TASK_ID
from api.schemas import (
    BatchAccepted,
    BatchFailure,
    BatchItemCreate,
    BatchView,
    DeliveryLog,
    DeliveryView,
    DetectAccepted,
    DetectCreate,
    DetectRequest,
    DetectResultView,
    DetectTaskPage,
    DetectTaskSummary,
    DetectTaskView,
    PersonView,
    Progress,
    RecentDeliveryPage,
    RecentDeliveryView,
    TaskErrorView,
    WebhookEventView,
)
from api.webhook_endpoint_schemas import (
    RotatedSecretView,
    WebhookEndpointUpdate,
    WebhookEndpointView,
    WebhookSecretView,
)
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import (
    SHAPE_GROUP_SIZES,
    Appearance,
    DetectorInfo,
    FaceFrame,
    FaceShape,
    MediaInfo,
    ShapePoint,
)

CREATED = datetime(2026, 5, 27, 12, 14, 3, 120000, tzinfo=UTC)
STARTED = datetime(2026, 5, 27, 12, 14, 3, 410000, tzinfo=UTC)
FINISHED = datetime(2026, 5, 27, 12, 14, 4, 2000, tzinfo=UTC)
WEBHOOK_URL = "https://hooks.example.com/facequeue"
WEBHOOK_ID = "msg_2xY7kQm4TzR8pL1nV6cB"
CROP_URL = f"https://api.example.com/v1/media/crops/{EXAMPLE_TASK_ID}/0-0.jpg?expires=1780000000&sig=4f1c0a"

# seed 000's frame
FACE_FRAME = FaceFrame(
    landmarks=[[[120, 85], [180, 88], [150, 130], [150, 165], [125, 165], [175, 168]]],
    landmarks_str=["120,85:180,88:150,130:150,165"],
    region=[[80, 50, 150, 180]],
    removed=[],
    frame_time=None,
    face_urls=None,
    crop_region=None,
    crop_landmarks=None,
)
MEDIA = MediaInfo(kind="image", mime="image/jpeg", width=640, height=480, duration=None, fps=None, frame_count=None)
DETECTOR = DetectorInfo(name="yunet", model_version="2023mar", max_side=640, upstream_frames=0)
APPEARANCE = Appearance(timestamp=0.0, frame_idx=0, bbox=[80, 50, 230, 230])
PERSON = PersonView(
    person_id="person_0",
    index=0,
    face_url=CROP_URL,
    bbox=[80, 50, 230, 230],
    confidence=0.95,
    appearances=[APPEARANCE],
    first_seen=0.0,
    last_seen=0.0,
)
POINT = ShapePoint(x=310, y=211)
# 90 points in the seed's groups: along a line here, where a real face traces each feature's outline
FACE_SHAPE = FaceShape(
    **{
        group: [ShapePoint(x=296 + 4 * n, y=196 + 3 * n) for n in range(size)]
        for group, size in SHAPE_GROUP_SIZES.items()
    }
)
RESULT = DetectResultView(
    faces_obj={"0": FACE_FRAME},
    scores={"0": [0.93]},
    media=MEDIA,
    detector=DETECTOR,
    frame_count=1,
    face_shape_set=None,
    persons=None,
    index=INDEX_REPORT,
    matches={"0": [[MATCH]]},
)
ERROR = TaskErrorView(code="download_failed", message="Failed to download media from URL")
TASK = DetectTaskView(
    detect_task_id=EXAMPLE_TASK_ID,
    status=TaskStatus.SUCCEEDED,
    kind="image",
    progress=Progress(done=1, total=1),
    attempts=1,
    created_at=CREATED,
    started_at=STARTED,
    heartbeat_at=STARTED,
    finished_at=FINISHED,
    timings={"queue_wait": 0.29, "download": 0.05, "detect": 0.21},
    detector="yunet",
    model_version="2023mar",
    result=RESULT,
    error=None,
)
SUMMARY = DetectTaskSummary(
    detect_task_id=EXAMPLE_TASK_ID,
    status=TaskStatus.SUCCEEDED,
    kind="image",
    source="group.jpg",
    faces=1,
    created_at=CREATED,
    finished_at=FINISHED,
)
EVENT = WebhookEventView(
    id=WEBHOOK_ID,
    type="detect_task.succeeded",
    url=WEBHOOK_URL,
    state="succeeded",
    attempts=1,
    next_attempt_at=None,
    created_at=FINISHED,
)
DELIVERY = DeliveryView(
    event_id=WEBHOOK_ID,
    attempt=1,
    url=WEBHOOK_URL,
    status_code=200,
    error=None,
    response_body="ok",
    latency_ms=42,
    created_at=FINISHED,
    next_attempt_at=None,
)
RECENT_DELIVERY = RecentDeliveryView(
    **DELIVERY.model_dump(),
    event_type="detect_task.succeeded",
    event_state="succeeded",
    detect_task_id=EXAMPLE_TASK_ID,
    batch_id=None,
)
DETECT_ITEM = DetectCreate(url="https://example.com/photos/0001.jpg", return_face_url=True)
MANIFEST_ITEMS = [
    BatchItemCreate(url="https://example.com/photos/0001.jpg", return_face_url=True, name="photos/0001.jpg"),
    BatchItemCreate(url="https://example.com/clips/0002.mp4", num_frames=10, name="clips/0002.mp4"),
    BatchItemCreate(url="https://example.com/photos/0003.jpg", landmarks="90"),
]
BATCH_RESULT_LINES = [
    shapes.BatchResultLine(
        position=0,
        name="photos/0001.jpg",
        detect_task_id=EXAMPLE_TASK_ID,
        status=TaskStatus.SUCCEEDED,
        result=RESULT,
        error=None,
    ),
    shapes.BatchResultLine(
        position=1,
        name="clips/0002.mp4",
        detect_task_id="5e1f3a7c9b2d4e6f8a0c2e4a6c8e0a2b",
        status=TaskStatus.FAILED,
        result=None,
        error=ERROR,
    ),
]
CRUN_STATE = shapes.CrunTaskState(
    detect_task_id=EXAMPLE_TASK_ID,
    status="succeeded",
    error=None,
    result=shapes.CrunResult(
        id="m1oZzqYp9dN",
        status="succeed",
        type="face_detect",
        hair_id=None,
        faces=[shapes.CrunFace(id=0, link=CROP_URL)],
        started_at="2026-05-27 12:14:03",
        finished_at="2026-05-27 12:14:04",
        error=None,
    ),
)

INSTANCES: list[BaseModel] = [
    FACE_FRAME,
    MEDIA,
    DETECTOR,
    APPEARANCE,
    PERSON,
    POINT,
    FACE_SHAPE,
    RESULT,
    ERROR,
    TASK,
    SUMMARY,
    EVENT,
    DELIVERY,
    RECENT_DELIVERY,
    DETECT_ITEM,
    MANIFEST_ITEMS[0],
    DetectRequest(url="https://example.com/photos/group.jpg", single_face=False, callback_url=WEBHOOK_URL),
    DetectAccepted(detect_task_id=EXAMPLE_TASK_ID, status=TaskStatus.QUEUED),
    Progress(done=3, total=10),
    *COLLECTION_INSTANCES,
    DetectTaskPage(items=[SUMMARY], next_cursor="MjAyNi0wNS0yN1QxMjoxNDowMy4xMg"),
    BatchAccepted(batch_id=EXAMPLE_BATCH_ID, total=3),
    BatchFailure(position=2, name=None, detect_task_id=EXAMPLE_TASK_ID, error=ERROR.model_dump()),
    BatchView(
        batch_id=EXAMPLE_BATCH_ID,
        status="running",
        persons=False,
        total=3,
        counts={"queued": 1, "processing": 0, "succeeded": 1, "failed": 1, "canceled": 0},
        progress=0.667,
        eta_seconds=1.5,
        created_at=CREATED,
        finished_at=None,
        failures=[BatchFailure(position=2, name=None, detect_task_id=EXAMPLE_TASK_ID, error=ERROR.model_dump())],
    ),
    DeliveryLog(detect_task_id=EXAMPLE_TASK_ID, events=[EVENT], items=[DELIVERY]),
    RecentDeliveryPage(items=[RECENT_DELIVERY], next_cursor=None),
    WebhookEndpointUpdate(url=WEBHOOK_URL),
    WebhookEndpointView(url=WEBHOOK_URL, disabled_at=None, secret_rotated_at=None, previous_secret_expires_at=None),
    WebhookSecretView(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    RotatedSecretView(secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", previous_secret_expires_at=FINISHED),
    shapes.ErrorDetail(code="not_found", message=f"detect task {EXAMPLE_TASK_ID} not found", field="detect_task_id"),
    shapes.NativeError(
        error=shapes.ErrorDetail(code="invalid_url", message="Invalid URL format", field="url"),
    ),
    shapes.BatchCreate(
        items=MANIFEST_ITEMS[:2],
        defaults=DetectCreate(single_face=True),
        callback_url=WEBHOOK_URL,
    ),
    BATCH_RESULT_LINES[0],
    shapes.Readiness(status="ok", checks={"database": "ok", "broker": "ok", "workers": "ok"}),
    shapes.DetectFacesResponse(error_code=0, error_msg="SUCCESS", faces_obj={"0": FACE_FRAME}),
    shapes.AnalyzeFramesResponse(success=True, frame_count=1, persons=[PERSON]),
    shapes.AnalyzeFramesErrorResponse(success=False, error="frame_urls is required and must not be empty"),
    shapes.CrunTaskCreated(detect_task_id=EXAMPLE_TASK_ID),
    shapes.CrunFace(id=0, link=CROP_URL),
    CRUN_STATE.result,
    CRUN_STATE,
    shapes.CrunCreateResponse(code=200, message="success", data=shapes.CrunTaskCreated(detect_task_id=EXAMPLE_TASK_ID)),
    shapes.CrunResultResponse(code=200, message="success", data=CRUN_STATE),
    shapes.CrunError(code=404, message=f"detect task {EXAMPLE_TASK_ID} not found", data=None),
    shapes.FaceAnalyzeResponse(
        image_width=640, image_height=480, face_model_version="3.0", face_shape_set=[FACE_SHAPE]
    ),
    shapes.AceDataErrorDetail(code="api_error", message="fetch failed"),
    shapes.AceDataError(
        success=False,
        error=shapes.AceDataErrorDetail(code="api_error", message="fetch failed"),
        trace_id="2cf86e86-22a4-46e1-ac2f-032c0f2a4e89",
    ),
]

# The compat requests: each seed's own request example
SEED_REQUESTS: dict[str, dict[str, Any]] = {
    "DetectFacesRequest": {"url": "https://example.com/image.jpg"},
    "AnalyzeFramesRequest": {
        "frame_urls": [
            "https://example.com/frame_0.jpg",
            "https://example.com/frame_1.jpg",
            "https://example.com/frame_2.jpg",
        ],
        "timestamps": [0, 1, 2],
    },
    "ImageTaskRequest": {"image_url": "https://example.com/source.png"},
    "VideoTaskRequest": {"video_url": "https://example.com/source.mp4", "num_frames": 5},
    "FaceAnalyzeRequest": {"image_url": "https://cdn.acedata.cloud/lrbtcn.jpg"},
}

EXAMPLES: dict[str, Any] = {
    **{type(model).__name__: model.model_dump(mode="json", exclude_unset=True) for model in INSTANCES},
    **SEED_REQUESTS,
}
