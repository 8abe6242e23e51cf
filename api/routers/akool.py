"""Akool's detect API (seeds 000, 001, 003), translated onto the core task service.

Both calls are synchronous for the client: the task goes to the interactive queue and the
request waits for it (FACEQUEUE_SYNC_TIMEOUT), awaiting it without a thread, at most
FACEQUEUE_MAX_SYNC_CALLS_PER_KEY at once per key. Errors keep each endpoint's own shape:
detect_faces answers HTTP 200 with `error_code` 1; analyze_frames answers 400/500 with
`{"success": false, "error": ...}`. Where the seed docs print the message with typographic
quotes (‘url’), facequeue sends plain ASCII quotes, as the API's own bytes would be.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.compat import shaped_route
from api.deps import DetectServiceDep, LinkDep, SyncCallSlot, TenantDep
from api.errors import GATE_STATUSES, InvalidInput, MissingInput, ServiceError
from api.openapi.responses import CALLER_GATES, SUBMIT_GATES, ErrorDocs, TaskFailed
from api.openapi.shapes import AnalyzeFramesErrorResponse, AnalyzeFramesResponse, DetectFacesResponse
from api.rendering import akool_failure_message, fetch_failed, frames_with_links, person_view
from api.schemas import FrameListInput, MediaInput
from api.services.submission import MISSING_INPUT_MESSAGE, DetectSubmission
from facequeue.core.enums import SubmitApi, TaskStatus
from facequeue.core.errors import BASE_MESSAGES, ErrorCode
from facequeue.core.schemas import CropOptions, DetectOptions, DetectResult, FaceOptions, SamplingOptions

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


DETECT_FACES_ERRORS = ErrorDocs(_detect_faces_error, DetectFacesResponse)
ANALYZE_FRAMES_ERRORS = ErrorDocs(_analyze_frames_error, AnalyzeFramesErrorResponse)
detect_faces_router = APIRouter(
    prefix="/interface/detect-api",
    tags=["akool"],
    route_class=shaped_route(_detect_faces_error),
    responses=DETECT_FACES_ERRORS.responses(*CALLER_GATES),
)
analyze_frames_router = APIRouter(
    prefix="/interface/detect-api",
    tags=["akool"],
    route_class=shaped_route(_analyze_frames_error),
    responses=ANALYZE_FRAMES_ERRORS.responses(*CALLER_GATES),
)


class DetectFacesRequest(FaceOptions, SamplingOptions, MediaInput):
    pass


class AnalyzeFramesRequest(CropOptions, FrameListInput):
    pass


@detect_faces_router.post(
    "/detect_faces",
    dependencies=[SyncCallSlot],
    response_model=DetectFacesResponse,
    operation_id="detectFaces",
    responses=DETECT_FACES_ERRORS.responses(
        413,
        MissingInput(MISSING_INPUT_MESSAGE, field="url"),
        *SUBMIT_GATES,
        504,
        TaskFailed(BASE_MESSAGES[ErrorCode.DOWNLOAD_FAILED]),
    ),
)
async def detect_faces(
    body: DetectFacesRequest, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep
) -> JSONResponse:
    params = DetectOptions(**body.model_dump(exclude={"url", "img"}))
    task = await service.submit_and_wait(
        DetectSubmission(url=body.url, img=body.img, params=params, tenant_id=tenant_id, api=SubmitApi.AKOOL)
    )
    if task.status != TaskStatus.SUCCEEDED:
        return _detect_faces_failure(akool_failure_message(task))
    result = DetectResult.model_validate(task.result)
    frames = {key: frame.model_dump() for key, frame in frames_with_links(result, link).items()}
    return JSONResponse({"error_code": 0, "error_msg": "SUCCESS", "faces_obj": frames})


@analyze_frames_router.post(
    "/faceswap/analyze_frames",
    dependencies=[SyncCallSlot],
    response_model=AnalyzeFramesResponse,
    operation_id="analyzeFrames",  # the seed's own
    responses=ANALYZE_FRAMES_ERRORS.responses(
        413,
        InvalidInput(FRAME_URLS_REQUIRED, field="frame_urls"),
        *SUBMIT_GATES,
        504,
        TaskFailed(FRAME_DOWNLOAD_FAILED, status_code=400),
        TaskFailed(FRAMES_FAILED),
    ),
)
async def analyze_frames(
    body: AnalyzeFramesRequest, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep
) -> JSONResponse:
    if not body.frame_urls:
        raise InvalidInput(FRAME_URLS_REQUIRED, field="frame_urls")
    params = DetectOptions(
        frame_urls=tuple(body.frame_urls),
        timestamps=tuple(body.timestamps or ()),
        expand_ratio=body.expand_ratio,
        persons=True,
    )
    task = await service.submit_and_wait(DetectSubmission(params=params, tenant_id=tenant_id, api=SubmitApi.AKOOL))
    if task.status != TaskStatus.SUCCEEDED:
        message, status = (FRAME_DOWNLOAD_FAILED, 400) if fetch_failed(task) else (FRAMES_FAILED, 500)
        return JSONResponse({"success": False, "error": message}, status_code=status)
    result = DetectResult.model_validate(task.result)
    persons = [person_view(person, link).model_dump() for person in result.persons or []]
    return JSONResponse({"success": True, "frame_count": result.frame_count, "persons": persons})
