"""AceData's face/analyze (seed 002, Tencent AnalyzeFace style): 90 points per face, synchronous.

Errors are `{"success": false, "error": {"code", "message"}, "trace_id"}`: 400
token_mismatched for bad parameters, 400 api_not_implemented for an unknown
face_model_version, 500 api_error for everything that fails while processing (a failed
download is "fetch failed", as in the seed's example).
"""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.compat import shaped_route
from api.deps import DetectServiceDep, SyncCallSlot, TenantDep
from api.errors import InvalidInput, ServiceError
from api.openapi.responses import CALLER_GATES, SUBMIT_GATES, ErrorDocs, TaskFailed, missing_field
from api.openapi.shapes import AceDataError, FaceAnalyzeResponse
from api.rendering import fetch_failed
from api.services.submission import DetectSubmission
from facequeue.core.enums import SubmitApi, TaskStatus
from facequeue.core.schemas import DetectOptions, DetectResult, enum_names

FACE_MODEL_VERSIONS = ("2.0", "3.0")


class NotImplementedVersion(InvalidInput):
    status_code = 400
    code = "api_not_implemented"


def acedata_error(status: int, code: str, message: str) -> JSONResponse:
    body = {"success": False, "error": {"code": code, "message": message}, "trace_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


# The seed's codes for 401 and 429; the other gates keep facequeue's code names.
GATE_CODES = {
    401: "invalid_token",
    402: "insufficient_credits",
    429: "too_many_requests",
    455: "maintenance",
    503: "service_unavailable",
    505: "feature_disabled",
}


def _render_error(error: ServiceError) -> JSONResponse:
    if isinstance(error, NotImplementedVersion):
        return acedata_error(400, error.code, error.message)
    if error.status_code in GATE_CODES:
        return acedata_error(error.status_code, GATE_CODES[error.status_code], error.message)
    if error.status_code >= 500:
        return acedata_error(500, "api_error", error.message)
    return acedata_error(400, "token_mismatched", error.message)


ACEDATA_ERRORS = ErrorDocs(_render_error, AceDataError)
router = APIRouter(
    prefix="/face",
    tags=["acedata"],
    route_class=shaped_route(_render_error),
    responses=ACEDATA_ERRORS.responses(*CALLER_GATES),
)


class FaceAnalyzeRequest(BaseModel):
    image_url: str
    mode: Literal[0, 1] = Field(
        0, description="0: every face; 1: the largest face", json_schema_extra=enum_names("EVERY_FACE", "LARGEST_FACE")
    )
    face_model_version: str = "3.0"
    need_rotate_detection: Literal[0, 1] = Field(0, json_schema_extra=enum_names("OFF", "ON"))


@router.post(
    "/analyze",
    dependencies=[SyncCallSlot],
    operation_id="analyzeFace",
    responses={
        200: {"model": FaceAnalyzeResponse},  # documents the dict the route returns, as it is
        **ACEDATA_ERRORS.responses(
            413,
            missing_field("image_url"),
            NotImplementedVersion("face_model_version 1.0 is not implemented (supported: 2.0, 3.0)"),
            *SUBMIT_GATES,
            504,
            TaskFailed("fetch failed"),
        ),
    },
)
async def analyze(body: FaceAnalyzeRequest, service: DetectServiceDep, tenant_id: TenantDep):
    if body.face_model_version not in FACE_MODEL_VERSIONS:
        raise NotImplementedVersion(
            f"face_model_version {body.face_model_version} is not implemented "
            f"(supported: {', '.join(FACE_MODEL_VERSIONS)})",
            field="face_model_version",
        )
    params = DetectOptions(
        media_type="image",
        landmarks="90",
        single_face=body.mode == 1,
        need_rotate_detection=bool(body.need_rotate_detection),
    )
    task = await service.submit_and_wait(
        DetectSubmission(url=body.image_url, params=params, tenant_id=tenant_id, api=SubmitApi.ACEDATA)
    )
    if task.status != TaskStatus.SUCCEEDED:
        return acedata_error(
            500, "api_error", "fetch failed" if fetch_failed(task) else task.error_msg or "analysis failed"
        )
    result = DetectResult.model_validate(task.result)
    return {
        "image_width": result.media.width,
        "image_height": result.media.height,
        "face_model_version": body.face_model_version,
        "face_shape_set": [shape.model_dump() for shape in (result.face_shape_set or {}).get("0", [])],
    }
