"""crun's asynchronous face-detection tasks (seed 004), translated onto the core task service.

Every answer is `{"code", "message", "data"}`; the HTTP status mirrors `code`. A finished
task's `result.id` is its detect_id, valid for FACEQUEUE_DETECT_ID_TTL seconds; after that
the task and its result stay readable and `result.error` says the detect_id expired.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.compat import shaped_route
from api.deps import DetectServiceDep, LinkDep, SettingsDep, TenantDep
from api.errors import ServiceError
from api.openapi.responses import CALLER_GATES, EXAMPLE_TASK_ID, SUBMIT_GATES, ErrorDocs, missing_field
from api.openapi.shapes import CrunCreateResponse, CrunError, CrunResultResponse
from api.rendering import crun_result
from api.services.detect import DetectService
from api.services.submission import DetectSubmission
from facequeue.core.enums import SubmitApi, TaskStatus
from facequeue.core.schemas import DetectOptions, SamplingOptions

CRUN_MESSAGES = {
    401: "Unauthorized",
    402: "Insufficient Credits",
    404: "Not Found",
    422: "Validation Error",
    429: "Rate Limited",
    455: "Service Unavailable",
    500: "Server Error",
    501: "Generation Failed",
    503: "Temporarily Unavailable",  # not in the seed: a backend did not answer (with Retry-After)
    505: "Feature Disabled",
}
STATUS_NAMES = {
    TaskStatus.QUEUED: "starting",
    TaskStatus.PROCESSING: "processing",
    TaskStatus.SUCCEEDED: "succeeded",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELED: "failed",
}


def crun_response(code: int, message: str, data: dict | None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": data}, status_code=code)


def _crun_error(error: ServiceError) -> JSONResponse:
    code = error.status_code if error.status_code in CRUN_MESSAGES else (500 if error.status_code >= 500 else 422)
    return crun_response(code, error.message, None)


CRUN_ERRORS = ErrorDocs(_crun_error, CrunError)
router = APIRouter(
    prefix="/api/v1/client/job",
    tags=["crun"],
    route_class=shaped_route(_crun_error),
    responses=CRUN_ERRORS.responses(*CALLER_GATES),
)
FAILED_TASK_RESPONSE = {
    "model": CrunResultResponse,
    "description": "The task failed or was canceled: Generation Failed",
    "content": {
        "application/json": {
            "example": {
                "code": 501,
                "message": CRUN_MESSAGES[501],
                "data": {
                    "detect_task_id": EXAMPLE_TASK_ID,
                    "status": "failed",
                    "error": "Failed to download media from URL",
                    "result": None,
                },
            }
        }
    },
}


class ImageTaskRequest(BaseModel):
    image_url: str = Field(description="Image to detect faces in")
    callback_url: str | None = None


class VideoTaskRequest(SamplingOptions):
    video_url: str = Field(description="Video or animated GIF to detect faces in")
    callback_url: str | None = None


def _submit(
    service: DetectService, tenant_id: str | None, url: str, params: DetectOptions, callback_url: str | None
) -> JSONResponse:
    task, _ = service.submit(
        DetectSubmission(
            url=url,
            params=params,
            tenant_id=tenant_id,
            with_detect_id=True,
            callback_url=callback_url,
            api=SubmitApi.CRUN,
        )
    )
    return crun_response(200, "success", {"detect_task_id": task.id})


@router.post(
    "/detect-face-image",
    response_model=CrunCreateResponse,
    operation_id="createImageDetectTask",
    responses=CRUN_ERRORS.responses(413, missing_field("image_url"), *SUBMIT_GATES),
)
def create_image_task(body: ImageTaskRequest, service: DetectServiceDep, tenant_id: TenantDep) -> JSONResponse:
    return _submit(
        service, tenant_id, body.image_url, DetectOptions(media_type="image", persons=True), body.callback_url
    )


@router.post(
    "/detect-face-video",
    response_model=CrunCreateResponse,
    operation_id="createVideoDetectTask",
    responses=CRUN_ERRORS.responses(413, missing_field("video_url"), *SUBMIT_GATES),
)
def create_video_task(body: VideoTaskRequest, service: DetectServiceDep, tenant_id: TenantDep) -> JSONResponse:
    params = DetectOptions(num_frames=body.num_frames, persons=True)
    return _submit(service, tenant_id, body.video_url, params, body.callback_url)


@router.get(
    "/detect-face-result",
    response_model=CrunResultResponse,
    operation_id="getDetectTaskResult",
    responses={501: FAILED_TASK_RESPONSE, **CRUN_ERRORS.responses(404, missing_field("detect_task_id"))},
)
def get_result(
    detect_task_id: Annotated[str, Query(min_length=1)],
    service: DetectServiceDep,
    tenant_id: TenantDep,
    link: LinkDep,
    settings: SettingsDep,
) -> JSONResponse:
    task = service.get_undeleted(detect_task_id, tenant_id)
    status = STATUS_NAMES[TaskStatus(task.status)]
    data = {"detect_task_id": task.id, "status": status, "error": None, "result": None}
    if task.status == TaskStatus.SUCCEEDED:
        data["result"] = crun_result(task, link, settings)
        return crun_response(200, "success", data)
    if status == "failed":
        data["error"] = task.error_msg if task.status == TaskStatus.FAILED else "Task was canceled"
        return crun_response(501, CRUN_MESSAGES[501], data)
    return crun_response(200, "success", data)
