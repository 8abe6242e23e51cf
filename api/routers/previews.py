"""Annotated pictures of a succeeded task: a frame with its faces drawn on it, or all its frames in a grid."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import PreviewServiceDep, TenantDep
from api.openapi.bodies import JPEG_RESPONSE
from api.openapi.responses import CALLER_GATES, NATIVE_ERRORS

router = APIRouter(prefix="/v1", tags=["native"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))

# a task's previews never change while they exist; DELETE removes them, so browsers keep them briefly
PREVIEW_HEADERS = {"Cache-Control": "private, max-age=300"}


@router.get(
    "/detect/{detect_task_id}/preview.jpg",
    response_class=Response,
    operation_id="getFramePreview",
    responses={200: JPEG_RESPONSE, **NATIVE_ERRORS.responses(404, 422)},
)
def frame_preview(
    detect_task_id: str,
    service: PreviewServiceDep,
    tenant_id: TenantDep,
    frame: Annotated[str | None, Query(max_length=12, description="a key of faces_obj; default: the first")] = None,
) -> Response:
    """The frame with each face's box, score, person id, 6 landmarks and (landmarks "90") 90 points drawn on it,
    at most 1280 px on its long side. 404 preview_not_found until the task has succeeded, for a frame it does
    not have, and once its frames are no longer kept (FACEQUEUE_PREVIEW_TTL)."""
    jpeg = service.frame_preview(detect_task_id, tenant_id, frame)
    return Response(jpeg, media_type="image/jpeg", headers=PREVIEW_HEADERS)


@router.get(
    "/detect/{detect_task_id}/contact.jpg",
    response_class=Response,
    operation_id="getContactSheet",
    responses={200: JPEG_RESPONSE, **NATIVE_ERRORS.responses(404)},
)
def contact_sheet(detect_task_id: str, service: PreviewServiceDep, tenant_id: TenantDep) -> Response:
    """Every sampled frame, annotated the same way, in a grid of 320 px wide cells, 5 to a row, each captioned
    with its frame key, time and face count."""
    return Response(service.contact_sheet(detect_task_id, tenant_id), media_type="image/jpeg", headers=PREVIEW_HEADERS)
