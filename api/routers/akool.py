"""Akool's detect API (seeds 000, 001, 003), translated onto the core task service.

Both calls are synchronous for the client: the task goes to the interactive queue and the
request waits for it (FACEQUEUE_SYNC_TIMEOUT). Errors keep each endpoint's own shape:
detect_faces answers HTTP 200 with `error_code` 1; analyze_frames answers 400/500 with
`{"success": false, "error": ...}`. Where the seed docs print the message with typographic
quotes (‘url’), facequeue sends plain ASCII quotes, as the API's own bytes would be.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.compat import shaped_route
from api.deps import DetectServiceDep, LinkDep, SettingsDep, TenantDep
from api.errors import GATE_STATUSES, InvalidInput, ServiceError, SyncTimeout
from api.rendering import frames_with_links, person_view
from api.service import DetectService, DetectSubmission
from db.models import DetectTask, TaskStatus
from facequeue.errors import BASE_MESSAGES, ErrorCode
from facequeue.schemas import DetectOptions, DetectResult
from facequeue.settings import Settings

INTERACTIVE = "interactive"
DOWNLOAD_CODES = {ErrorCode.URL_FORBIDDEN, ErrorCode.DOWNLOAD_FAILED, ErrorCode.MEDIA_TOO_LARGE}
FRAME_URLS_REQUIRED = "frame_urls is required and must not be empty"
FRAME_DOWNLOAD_FAILED = "Failed to download image from URL"
FRAMES_FAILED = "Failed to process frames"


def _detect_faces_error(error: ServiceError) -> JSONResponse:
    return _detect_faces_failure(error.message, error.status_code if error.status_code in GATE_STATUSES else 200)


def _detect_faces_failure(message: str, status: int = 200) -> JSONResponse:
    return JSONResponse({"error_code": 1, "error_msg": message, "faces_obj": {}}, status_code=status)


def _analyze_frames_error(error: ServiceError) -> JSONResponse:
    if error.status_code in GATE_STATUSES:
        status = error.status_code
    else:
        status = 500 if error.status_code >= 500 else 400
    return JSONResponse({"success": False, "error": error.message}, status_code=status)


detect_faces_router = APIRouter(
    prefix="/interface/detect-api", tags=["akool"], route_class=shaped_route(_detect_faces_error)
)
analyze_frames_router = APIRouter(
    prefix="/interface/detect-api", tags=["akool"], route_class=shaped_route(_analyze_frames_error)
)


class DetectFacesRequest(BaseModel):
    url: str | None = Field(None, description="Image or video URL; wins over img")
    img: str | None = Field(None, description="Base64 image, plain or data URI")
    num_frames: int = Field(5, ge=1, le=100, description="Frames analysed in a video (ignored for images)")
    return_face_url: bool = False
    single_face: bool = False


class AnalyzeFramesRequest(BaseModel):
    frame_urls: list[str] | None = None
    timestamps: list[float] | None = None
    expand_ratio: float = Field(0.3, ge=0, le=1)


def run_sync(service: DetectService, submission: DetectSubmission, settings: Settings) -> DetectTask:
    """Submit at interactive priority and wait; on timeout the task keeps running and the error names it."""
    task, _ = service.submit(submission)
    if not service.wait_until_final(task, settings.sync_timeout):
        raise SyncTimeout(task.id, settings.sync_timeout)
    return task


@detect_faces_router.post("/detect_faces")
def detect_faces(
    body: DetectFacesRequest, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep, settings: SettingsDep
) -> JSONResponse:
    params = DetectOptions(
        num_frames=body.num_frames, single_face=body.single_face, return_face_url=body.return_face_url
    )
    submission = DetectSubmission(url=body.url, img=body.img, params=params, queue=INTERACTIVE, tenant_id=tenant_id)
    task = run_sync(service, submission, settings)
    if task.status != TaskStatus.SUCCEEDED:
        return _detect_faces_failure(_failure_message(task))
    result = DetectResult.model_validate(task.result)
    frames = {key: frame.model_dump() for key, frame in frames_with_links(result, link).items()}
    return JSONResponse({"error_code": 0, "error_msg": "SUCCESS", "faces_obj": frames})


def _failure_message(task: DetectTask) -> str:
    if task.status == TaskStatus.CANCELED:
        return "Task was canceled"
    code = ErrorCode(task.error_code)
    return BASE_MESSAGES[code] if code in BASE_MESSAGES else task.error_msg or "Detection failed"


@analyze_frames_router.post("/faceswap/analyze_frames")
def analyze_frames(
    body: AnalyzeFramesRequest, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep, settings: SettingsDep
) -> JSONResponse:
    if not body.frame_urls:
        raise InvalidInput(FRAME_URLS_REQUIRED, field="frame_urls")
    params = DetectOptions(
        frame_urls=tuple(body.frame_urls),
        timestamps=tuple(body.timestamps or ()),
        expand_ratio=body.expand_ratio,
        persons=True,
    )
    task = run_sync(service, DetectSubmission(params=params, queue=INTERACTIVE, tenant_id=tenant_id), settings)
    if task.status != TaskStatus.SUCCEEDED:
        download_failed = task.error_code in DOWNLOAD_CODES or task.error_code == ErrorCode.INVALID_URL
        message, status = (FRAME_DOWNLOAD_FAILED, 400) if download_failed else (FRAMES_FAILED, 500)
        return JSONResponse({"success": False, "error": message}, status_code=status)
    result = DetectResult.model_validate(task.result)
    persons = [person_view(person, link).model_dump() for person in result.persons or []]
    return JSONResponse({"success": True, "frame_count": result.frame_count, "persons": persons})
