"""Native detect endpoints (/v1/detect): submit, poll, list and cancel detection tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import DetectServiceDep, LinkDep, TenantDep
from api.openapi.bodies import DETECT_REQUEST_BODY
from api.openapi.responses import (
    BODY_ERRORS,
    CALLER_GATES,
    NATIVE_ERRORS,
    OPTION_COLLECTION_NOT_FOUND,
    SUBMIT_GATES,
    TASK_FINAL,
)
from api.rendering import task_view
from api.schemas import (
    DetectAccepted,
    DetectRequest,
    DetectTaskPage,
    DetectTaskSummary,
    DetectTaskView,
    DetectUploadQuery,
)
from api.services.detect import DetectService
from api.services.submission import DetectSubmission
from api.uploads import UploadedMedia, UploadRoute
from facequeue.core.enums import TaskStatus

router = APIRouter(prefix="/v1", tags=["native"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))


def upload_detect(
    media: UploadedMedia,
    query: Annotated[DetectUploadQuery, Query()],
    service: DetectServiceDep,
    tenant_id: TenantDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> DetectAccepted:
    return _accepted(service, DetectSubmission.of_upload(media, query, tenant_id, idempotency_key), response)


# Registered before the JSON route on the same path: it takes the requests whose body is the file itself, and
# submitDetectTask's document describes both (api/openapi/bodies.py).
router.add_api_route(
    "/detect",
    upload_detect,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DetectAccepted,
    include_in_schema=False,
    route_class_override=UploadRoute,
)


@router.post(
    "/detect",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DetectAccepted,
    operation_id="submitDetectTask",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS, *SUBMIT_GATES, 409, OPTION_COLLECTION_NOT_FOUND),
    openapi_extra=DETECT_REQUEST_BODY,
)
def submit_detect(
    body: DetectRequest,
    service: DetectServiceDep,
    tenant_id: TenantDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> DetectAccepted:
    """JSON with the media as `url` or base64 `img`; or the file itself as the body (its Content-Type `image/*`,
    `video/*` or `application/octet-stream`) or as the `file` part of `multipart/form-data`, with the options
    in the query string by the same names."""
    submission = DetectSubmission.of_request(body, tenant_id, idempotency_key, body.callback_url)
    return _accepted(service, submission, response)


def _accepted(service: DetectService, submission: DetectSubmission, response: Response) -> DetectAccepted:
    task, created = service.submit(submission)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return DetectAccepted(detect_task_id=task.id, status=task.status)


@router.get(
    "/detect/{detect_task_id}",
    response_model=DetectTaskView,
    operation_id="getDetectTask",
    responses=NATIVE_ERRORS.responses(404),
)
def get_detect(detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep) -> DetectTaskView:
    return task_view(service.get(detect_task_id, tenant_id), link)


@router.get(
    "/detect", response_model=DetectTaskPage, operation_id="listDetectTasks", responses=NATIVE_ERRORS.responses(422)
)
def list_detect(
    service: DetectServiceDep,
    tenant_id: TenantDep,
    status_filter: Annotated[TaskStatus | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DetectTaskPage:
    tasks, next_cursor = service.list(tenant_id, status_filter, cursor, limit)
    return DetectTaskPage(items=[DetectTaskSummary.of(task) for task in tasks], next_cursor=next_cursor)


@router.post(
    "/detect/{detect_task_id}/cancel",
    response_model=DetectTaskView,
    operation_id="cancelDetectTask",
    responses=NATIVE_ERRORS.responses(404, TASK_FINAL),
)
def cancel_detect_task(
    detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep
) -> DetectTaskView:
    """Cancel a queued or processing task. A final task is left as it is, result kept: 409 task_final."""
    return task_view(service.cancel(detect_task_id, tenant_id), link)


@router.delete(
    "/detect/{detect_task_id}",
    response_model=DetectTaskView,
    operation_id="deleteDetectTask",
    responses=NATIVE_ERRORS.responses(404),
)
def cancel_detect(
    detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep
) -> DetectTaskView:
    return task_view(service.cancel_or_purge(detect_task_id, tenant_id), link)
