"""Bodies the routes build by hand, as models for the document: each API's error envelope, the compat
APIs' answers (built as dicts, in the seeds' key order), the batch body the route parses itself, and the
readiness report. api/openapi/document.py adds them to the document's components."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.collection_schemas import BatchMatchLine, BatchPersonLine
from api.schemas import BatchItemCreate, DetectCreate, DetectResultView, PersonView, TaskErrorView
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import FaceFrame, FaceShape, SearchOptions, enum_names

# --- native ---------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Machine-readable: validation_error, not_found, rate_limited, ...")
    message: str = Field(description="What went wrong, for people")
    field: str | None = Field(description="The request field at fault, when there is one")


class NativeError(BaseModel):
    """Every error of the native API (/v1, health excepted)."""

    error: ErrorDetail


class BatchCreate(BaseModel):
    """POST /v1/batches as JSON. The route parses it itself, so nesting is capped before validation."""

    items: list[BatchItemCreate] = Field(description="One detection per item, up to FACEQUEUE_MAX_BATCH_ITEMS")
    defaults: DetectCreate | None = Field(None, description="Fields every item gets unless it sets them itself")
    callback_url: str | None = Field(None, description="Where the batch's one batch.completed event goes")
    search: SearchOptions | None = Field(
        None, description="Search a collection in every item (an item's own `search`, or defaults', is refused)"
    )
    persons: bool = Field(
        False,
        description="Batch-wide person ids: every item runs with `persons`, and the persons of all items are "
        "grouped by identity (GET /v1/batches/{batch_id}/persons)",
    )


class BatchResultLine(BaseModel):
    """One line of GET /v1/batches/{batch_id}/results (JSONL), in submit order."""

    position: int
    name: str | None = Field(description="The item's name, as given when it was submitted")
    detect_task_id: str
    status: TaskStatus
    result: DetectResultView | None
    error: TaskErrorView | None


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description='"ok", or "error: ..." per check: database, broker, workers')


# --- Akool (seeds 000, 001, 003) ----------------------------------------------------------------------


class DetectFacesResponse(BaseModel):
    """detect_faces' every answer: error_code 0 with faces, or 1 with the message and no faces."""

    error_code: Literal[0, 1] = Field(
        description="0: success, 1: error", json_schema_extra=enum_names("SUCCESS", "ERROR")
    )
    error_msg: str = Field(description='"SUCCESS", or what went wrong')
    faces_obj: dict[str, FaceFrame] = Field(description='Per sampled frame, keyed by frame index ("0", "5", ...)')


class AnalyzeFramesResponse(BaseModel):
    success: Literal[True]
    frame_count: int = Field(description="Frames analysed")
    persons: list[PersonView] = Field(description="People found, each once across all frames, left to right")


class AnalyzeFramesErrorResponse(BaseModel):
    success: Literal[False]
    error: str = Field(description="What went wrong")


# --- crun (seed 004) ----------------------------------------------------------------------------------


class CrunTaskCreated(BaseModel):
    detect_task_id: str


class CrunFace(BaseModel):
    id: int
    link: str | None = Field(description="The face's crop")


class CrunResult(BaseModel):
    id: str | None = Field(
        description="The detect_id, valid for FACEQUEUE_DETECT_ID_TTL after the task finished; null for a task "
        "submitted through another API (only crun's submits make one)"
    )
    status: Literal["succeed"]
    type: Literal["face_detect"]
    hair_id: None
    faces: list[CrunFace]
    started_at: str = Field(description="UTC, YYYY-MM-DD HH:MM:SS")
    finished_at: str = Field(description="UTC, YYYY-MM-DD HH:MM:SS")
    error: str | None = Field(description='"detect_id expired" once the detect_id is no longer valid')


class CrunTaskState(BaseModel):
    detect_task_id: str
    status: Literal["starting", "processing", "succeeded", "failed"]
    error: str | None = Field(description="Why a failed task failed")
    result: CrunResult | None = Field(description="Once succeeded")


class CrunCreateResponse(BaseModel):
    code: Literal[200]
    message: str
    data: CrunTaskCreated


class CrunResultResponse(BaseModel):
    """A task's state; a failed task answers HTTP 501 with code 501, Generation Failed."""

    code: Literal[200, 501] = Field(json_schema_extra=enum_names("SUCCESS", "GENERATION_FAILED"))
    message: str
    data: CrunTaskState


class CrunError(BaseModel):
    code: int = Field(description="The HTTP status, repeated")
    message: str
    data: None


# --- AceData (seed 002) -------------------------------------------------------------------------------


class FaceAnalyzeResponse(BaseModel):
    image_width: int
    image_height: int
    face_model_version: str
    face_shape_set: list[FaceShape] = Field(description="90 points per face, in named groups")


class AceDataErrorDetail(BaseModel):
    code: str = Field(
        description="token_mismatched, api_not_implemented, invalid_token, too_many_requests, api_error, ..."
    )
    message: str


class AceDataError(BaseModel):
    success: Literal[False]
    error: AceDataErrorDetail
    trace_id: str


# What only declared responses and request bodies refer to (by $ref), for the document's components
DOCUMENT_ONLY_REQUESTS = (BatchCreate,)
DOCUMENT_ONLY_RESPONSES = (
    NativeError,
    BatchResultLine,
    BatchMatchLine,
    BatchPersonLine,
    DetectFacesResponse,
    AnalyzeFramesErrorResponse,
    CrunError,
    AceDataError,
)
