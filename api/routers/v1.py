"""Native v1 API: submit, poll, list and cancel detection tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import DetectServiceDep, TenantDep
from api.schemas import DetectAccepted, DetectCreate, DetectTaskPage, DetectTaskSummary, DetectTaskView
from api.service import DetectParams, DetectSubmission
from db.models import TaskStatus

router = APIRouter(prefix="/v1", tags=["detect"])


@router.post("/detect", status_code=status.HTTP_202_ACCEPTED, response_model=DetectAccepted)
def submit_detect(
    body: DetectCreate,
    service: DetectServiceDep,
    tenant_id: TenantDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> DetectAccepted:
    task, created = service.submit(
        DetectSubmission(
            url=body.url,
            img=body.img,
            params=DetectParams(
                media_type=body.media_type,
                num_frames=body.num_frames,
                single_face=body.single_face,
                max_side=body.max_side,
            ),
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
        )
    )
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return DetectAccepted(detect_task_id=task.id, status=task.status)


@router.get("/detect/{detect_task_id}", response_model=DetectTaskView)
def get_detect(detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep) -> DetectTaskView:
    return DetectTaskView.of(service.get(detect_task_id, tenant_id))


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
def cancel_detect(detect_task_id: str, service: DetectServiceDep, tenant_id: TenantDep) -> DetectTaskView:
    return DetectTaskView.of(service.cancel_or_purge(detect_task_id, tenant_id))
