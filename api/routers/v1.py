"""Native v1 API: submit, poll, list and cancel detection tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import DetectServiceDep, LinkDep, TenantDep
from api.rendering import LinkFn, result_view
from api.schemas import DetectAccepted, DetectCreate, DetectTaskPage, DetectTaskSummary, DetectTaskView
from api.service import DetectSubmission
from db.models import DetectTask, TaskStatus
from facequeue.schemas import DetectOptions, DetectResult

router = APIRouter(prefix="/v1", tags=["detect"])


@router.post("/detect", status_code=status.HTTP_202_ACCEPTED, response_model=DetectAccepted)
def submit_detect(
    body: DetectCreate,
    service: DetectServiceDep,
    tenant_id: TenantDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> DetectAccepted:
    task, created = service.submit(submission_of(body, tenant_id, idempotency_key))
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return DetectAccepted(detect_task_id=task.id, status=task.status)


def submission_of(body: DetectCreate, tenant_id: str | None, idempotency_key: str | None) -> DetectSubmission:
    return DetectSubmission(
        url=body.url,
        img=body.img,
        params=DetectOptions(
            media_type=body.media_type,
            num_frames=body.num_frames,
            single_face=body.single_face,
            max_side=body.max_side,
            return_face_url=body.return_face_url,
            expand_ratio=body.expand_ratio,
            landmarks=body.landmarks,
            persons=body.persons,
            need_rotate_detection=body.need_rotate_detection,
            frame_urls=tuple(body.frame_urls or ()),
            timestamps=tuple(body.timestamps or ()),
            detector=body.detector,
            sample_fps=body.sample_fps,
            tiling=body.tiling,
        ),
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
    )


@router.get("/detect/{detect_task_id}", response_model=DetectTaskView)
def get_detect(detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep) -> DetectTaskView:
    return task_view(service.get(detect_task_id, tenant_id), link)


@router.get("/detect", response_model=DetectTaskPage)
def list_detect(
    service: DetectServiceDep,
    tenant_id: TenantDep,
    status_filter: Annotated[TaskStatus | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DetectTaskPage:
    tasks, next_cursor = service.list(tenant_id, status_filter, cursor, limit)
    return DetectTaskPage(items=[DetectTaskSummary.of(task) for task in tasks], next_cursor=next_cursor)


@router.delete("/detect/{detect_task_id}", response_model=DetectTaskView)
def cancel_detect(
    detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep
) -> DetectTaskView:
    return task_view(service.cancel_or_purge(detect_task_id, tenant_id), link)


def task_view(task: DetectTask, link: LinkFn) -> DetectTaskView:
    result = result_view(DetectResult.model_validate(task.result), link) if task.result else None
    return DetectTaskView.of(task, result)
