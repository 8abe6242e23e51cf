"""Batches: thousands of detection tasks in one request (JSON, or a streamed JSONL manifest)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from api.compat import validation_error
from api.deps import DetectServiceDep, LinkDep, SettingsDep, TenantDep
from api.errors import InvalidInput, NotFound, PayloadTooLarge
from api.rendering import LinkFn, result_view
from api.routers.v1 import submission_of
from api.schemas import DetectCreate
from db import batches
from db.engine import get_sessionmaker
from db.models import Batch, DetectTask, utcnow
from facequeue.schemas import DetectResult
from workers.finalize import on_task_final

router = APIRouter(prefix="/v1", tags=["batches"])

JSONL_CONTENT_TYPES = (b"application/x-ndjson", b"application/jsonl", b"application/x-jsonlines")
FAILURES_SHOWN = 10
MAX_MANIFEST_BYTES = 2 * 1024**3  # a JSONL manifest is spooled to disk, not memory


class BatchAccepted(BaseModel):
    batch_id: str
    total: int


class BatchFailure(BaseModel):
    position: int
    detect_task_id: str
    error: dict[str, str]


class BatchView(BaseModel):
    batch_id: str
    status: str  # running | completed | canceled
    total: int
    counts: dict[str, int]
    progress: float
    eta_seconds: float | None
    created_at: datetime
    finished_at: datetime | None
    failures: list[BatchFailure]


@router.post("/batches", status_code=status.HTTP_202_ACCEPTED, response_model=BatchAccepted)
async def create_batch(
    request: Request,
    service: DetectServiceDep,
    tenant_id: TenantDep,
    settings: SettingsDep,
    callback_url: Annotated[str | None, Query(description="JSONL uploads: the batch's webhook")] = None,
    defaults: Annotated[str | None, Query(description="JSONL uploads: JSON object of per-item defaults")] = None,
) -> BatchAccepted:
    """JSON: `{"items": [...], "defaults": {...}, "callback_url"}` (up to FACEQUEUE_MAX_BATCH_ITEMS items).
    JSONL (`Content-Type: application/x-ndjson`): one item per line, streamed to disk while it arrives."""
    if request.headers.get("content-type", "").split(";")[0].strip().encode() in JSONL_CONTENT_TYPES:
        item_defaults = _json_object(defaults, "defaults") if defaults else {}
        with tempfile.TemporaryFile() as spool:
            await _spool(request, spool)
            spool.seek(0)
            items = (_item(item, item_defaults, n) for n, item in enumerate(_manifest_lines(spool)))
            batch = await run_in_threadpool(service.submit_batch, tenant_id, items, callback_url)
        return BatchAccepted(batch_id=batch.id, total=batch.total)
    body = _json_object((await request.body()).decode() or "{}", "body")
    raw_items = body.get("items")
    if not isinstance(raw_items, list):
        raise InvalidInput("items must be a list of detection requests", field="items")
    if len(raw_items) > settings.max_batch_items:
        raise InvalidInput(
            f"items has {len(raw_items)} entries, the limit is {settings.max_batch_items}; upload larger "
            "manifests as JSONL",
            field="items",
        )
    item_defaults = body.get("defaults") or {}
    items = (_item(item, item_defaults, n) for n, item in enumerate(raw_items))
    batch = await run_in_threadpool(service.submit_batch, tenant_id, items, body.get("callback_url"))
    return BatchAccepted(batch_id=batch.id, total=batch.total)


def _manifest_lines(spool) -> Iterator[Any]:
    for number, line in enumerate(spool, start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"line {number} of the manifest is not valid JSON: {error}", field="items") from error


async def _spool(request: Request, spool) -> None:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_MANIFEST_BYTES:
            raise PayloadTooLarge(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        spool.write(chunk)


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{name} is not valid JSON: {error}", field=name) from error
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return value


def _item(raw: Any, defaults: dict[str, Any], position: int):
    if not isinstance(raw, dict):
        raise InvalidInput(f"items[{position}] must be an object", field=f"items[{position}]")
    try:
        body = DetectCreate.model_validate({**defaults, **raw})
    except ValidationError as error:
        problem = validation_error(error)
        raise InvalidInput(
            f"items[{position}].{problem.message}", field=f"items[{position}].{problem.field}"
        ) from error
    return submission_of(body, tenant_id=None, idempotency_key=None)


def _batch_or_404(session, batch_id: str, tenant_id: str | None) -> Batch:
    batch = batches.get_batch(session, batch_id, tenant_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", field="batch_id")
    return batch


@router.get("/batches/{batch_id}", response_model=BatchView)
def get_batch(batch_id: str, service: DetectServiceDep, tenant_id: TenantDep) -> BatchView:
    return batch_view(service.session, _batch_or_404(service.session, batch_id, tenant_id))


def batch_view(session, batch: Batch) -> BatchView:
    counts = batches.status_counts(session, batch.id)
    final = counts["succeeded"] + counts["failed"] + counts["canceled"]
    first_start, last_finish, processed = batches.processing_window(session, batch.id)
    eta = None
    if processed and final < batch.total and first_start is not None:
        rate = processed / max((utcnow() - first_start).total_seconds(), 1e-3)
        eta = round((batch.total - final) / rate, 1)
    state = "canceled" if batch.canceled_at else ("completed" if batch.finished_at else "running")
    failures = [
        BatchFailure(
            position=task.batch_position,
            detect_task_id=task.id,
            error={"code": task.error_code or "", "message": task.error_msg or ""},
        )
        for task in batches.first_failures(session, batch.id, FAILURES_SHOWN)
    ]
    return BatchView(
        batch_id=batch.id,
        status=state,
        total=batch.total,
        counts=counts,
        progress=round(final / batch.total, 4) if batch.total else 1.0,
        eta_seconds=eta,
        created_at=batch.created_at,
        finished_at=batch.finished_at,
        failures=failures,
    )


@router.get("/batches/{batch_id}/results")
def batch_results(batch_id: str, service: DetectServiceDep, tenant_id: TenantDep, link: LinkDep) -> StreamingResponse:
    """One JSON line per item, in submit order, streamed as it is read."""
    _batch_or_404(service.session, batch_id, tenant_id)
    return StreamingResponse(_result_lines(batch_id, link), media_type="application/x-ndjson")


def _result_lines(batch_id: str, link: LinkFn) -> Iterator[bytes]:
    session = get_sessionmaker()()  # the request's session is closed before a streamed body is sent
    try:
        for task in batches.items_in_order(session, batch_id):
            yield (json.dumps(_result_line(task, link), separators=(",", ":")) + "\n").encode()
    finally:
        session.close()


def _result_line(task: DetectTask, link: LinkFn) -> dict[str, Any]:
    result = (
        result_view(DetectResult.model_validate(task.result), link).model_dump(mode="json") if task.result else None
    )
    error = {"code": task.error_code, "message": task.error_msg} if task.error_code else None
    return {
        "position": task.batch_position,
        "detect_task_id": task.id,
        "status": task.status,
        "result": result,
        "error": error,
    }


@router.delete("/batches/{batch_id}", response_model=BatchView)
def cancel_batch(batch_id: str, service: DetectServiceDep, tenant_id: TenantDep) -> BatchView:
    """Cancel every item not yet final (running ones stop at their next frame); finished ones keep results."""
    session = service.session
    batch = _batch_or_404(session, batch_id, tenant_id)
    for task_id in batches.cancel_open_items(session, batch.id):
        on_task_final(session, task_id)
    session.commit()
    session.refresh(batch)
    return batch_view(session, batch)
