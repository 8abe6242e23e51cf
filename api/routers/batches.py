"""Batches: thousands of detection tasks in one request (JSON, or a streamed JSONL manifest)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.compat import validation_error
from api.deps import BatchServiceDep, LinkDep, SettingsDep, TenantDep
from api.errors import InvalidInput
from api.json_input import parse_json
from api.limits import is_jsonl
from api.openapi.bodies import (
    BATCH_MATCHES_RESPONSE,
    BATCH_PERSONS_RESPONSE,
    BATCH_REQUEST_BODY,
    BATCH_RESULTS_RESPONSE,
)
from api.openapi.responses import (
    BATCH_NOT_FOUND,
    BODY_ERRORS,
    CALLER_GATES,
    NATIVE_ERRORS,
    OPTION_COLLECTION_NOT_FOUND,
    PERSONS_NOT_REQUESTED,
    SUBMIT_GATES,
)
from api.rendering import batch_item_line, batch_match_line, batch_person_line
from api.schemas import BatchAccepted, BatchItemCreate, BatchView
from api.services.submission import DetectSubmission
from facequeue.core.schemas import SearchOptions

router = APIRouter(prefix="/v1", tags=["batches"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    operation_id="submitBatch",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS, *SUBMIT_GATES, OPTION_COLLECTION_NOT_FOUND),
    openapi_extra=BATCH_REQUEST_BODY,
)
async def create_batch(
    request: Request,
    service: BatchServiceDep,
    tenant_id: TenantDep,
    settings: SettingsDep,
    callback_url: Annotated[str | None, Query(description="JSONL uploads: the batch's webhook")] = None,
    defaults: Annotated[str | None, Query(description="JSONL uploads: JSON object of per-item defaults")] = None,
    search: Annotated[str | None, Query(description="JSONL uploads: JSON object, the batch's search option")] = None,
    persons: Annotated[bool, Query(description="JSONL uploads: batch-wide person ids")] = False,
) -> BatchAccepted:
    """JSON: `{"items": [...], "defaults": {...}, "callback_url", "search": {...}, "persons"}` (up to
    FACEQUEUE_MAX_BATCH_ITEMS items). JSONL (`Content-Type: application/x-ndjson`): one item per line, streamed to
    disk while it arrives, up to FACEQUEUE_MAX_MANIFEST_BYTES (api/limits.py enforces both body limits while the
    body streams in)."""
    if is_jsonl(request.headers.get("content-type")):
        batch_wide = _batch_wide(
            _json_object(defaults, "defaults") if defaults else {},
            _json_object(search, "search") if search else None,
            persons,
        )
        with tempfile.TemporaryFile() as spool:
            await _spool(request, spool)
            spool.seek(0)
            items = (_item(item, batch_wide, n) for n, item in enumerate(_manifest_lines(spool)))
            batch = await run_in_threadpool(service.submit, tenant_id, items, callback_url, persons)
        return BatchAccepted(batch_id=batch.id, total=batch.total)
    body = _json_object(await request.body() or b"{}", "body")
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
    if not isinstance(item_defaults, dict):
        raise InvalidInput("defaults must be a JSON object", field="defaults")
    body_callback_url = body.get("callback_url")
    if not isinstance(body_callback_url, str | None):
        raise InvalidInput("callback_url must be a string", field="callback_url")
    body_search, body_persons = body.get("search"), body.get("persons", False)
    if not isinstance(body_search, dict | None):
        raise InvalidInput("search must be a JSON object", field="search")
    if not isinstance(body_persons, bool):
        raise InvalidInput("persons must be true or false", field="persons")
    batch_wide = _batch_wide(item_defaults, body_search, body_persons)
    items = (_item(item, batch_wide, n) for n, item in enumerate(raw_items))
    batch = await run_in_threadpool(service.submit, tenant_id, items, body_callback_url, body_persons)
    return BatchAccepted(batch_id=batch.id, total=batch.total)


@dataclass(frozen=True)
class BatchWide:
    """What every item gets: the defaults it may override, and the batch's own options, which it may not."""

    defaults: dict[str, Any]
    imposed: dict[str, Any]


def _batch_wide(defaults: dict[str, Any], search: dict[str, Any] | None, persons: bool) -> BatchWide:
    imposed: dict[str, Any] = {"persons": True} if persons else {}
    if search is not None:
        if "search" in defaults:
            raise InvalidInput("search is given at batch level and in defaults: give it once", field="search")
        try:
            imposed["search"] = SearchOptions.model_validate(search).model_dump()
        except ValidationError as error:
            problem = validation_error(error)
            raise InvalidInput(f"search.{problem.message}", field=f"search.{problem.field}") from error
    return BatchWide(defaults, imposed)


def _manifest_lines(spool) -> Iterator[Any]:
    for number, line in enumerate(spool, start=1):
        if line.strip():
            yield parse_json(line, f"line {number} of the manifest", field="items")


async def _spool(request: Request, spool) -> None:
    async for chunk in request.stream():
        spool.write(chunk)


def _json_object(raw: bytes | str, name: str) -> dict[str, Any]:
    value = parse_json(raw, name)
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return value


def _item(raw: Any, batch_wide: BatchWide, position: int) -> DetectSubmission:
    if not isinstance(raw, dict):
        raise InvalidInput(f"items[{position}] must be an object", field=f"items[{position}]")
    if "search" in raw and "search" in batch_wide.imposed:
        raise InvalidInput(
            f"items[{position}].search: the batch's search applies to every item; give it at batch level or per "
            "item, not both",
            field=f"items[{position}].search",
        )
    try:
        body = BatchItemCreate.model_validate({**batch_wide.defaults, **raw, **batch_wide.imposed})
    except ValidationError as error:
        problem = validation_error(error)
        raise InvalidInput(
            f"items[{position}].{problem.message}", field=f"items[{position}].{problem.field}"
        ) from error
    return replace(DetectSubmission.of_request(body), item_name=body.name)


@router.get(
    "/batches/{batch_id}",
    response_model=BatchView,
    operation_id="getBatch",
    responses=NATIVE_ERRORS.responses(BATCH_NOT_FOUND),
)
def get_batch(batch_id: str, service: BatchServiceDep, tenant_id: TenantDep) -> BatchView:
    return service.get(batch_id, tenant_id)


@router.get(
    "/batches/{batch_id}/results",
    response_class=StreamingResponse,
    operation_id="getBatchResults",
    responses={200: BATCH_RESULTS_RESPONSE, **NATIVE_ERRORS.responses(BATCH_NOT_FOUND)},
)
def batch_results(batch_id: str, service: BatchServiceDep, tenant_id: TenantDep, link: LinkDep) -> StreamingResponse:
    """One JSON line per item, in submit order, streamed as it is read."""
    lines = (batch_item_line(task, link) for task in service.items(batch_id, tenant_id))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get(
    "/batches/{batch_id}/matches",
    response_class=StreamingResponse,
    operation_id="getBatchMatches",
    responses={200: BATCH_MATCHES_RESPONSE, **NATIVE_ERRORS.responses(BATCH_NOT_FOUND, 422)},
)
def batch_matches(
    batch_id: str,
    service: BatchServiceDep,
    tenant_id: TenantDep,
    external_id: Annotated[str | None, Query(max_length=255, description="Only this person's matches")] = None,
) -> StreamingResponse:
    """Where a batch's items met a collection's faces (items run with the `search` option): one JSON line per item
    with a match, in submit order, each match with its frame and time. "In which files, at which times was alice?"
    """
    lines = (line for task in service.items(batch_id, tenant_id) if (line := batch_match_line(task, external_id)))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get(
    "/batches/{batch_id}/persons",
    response_class=StreamingResponse,
    operation_id="getBatchPersons",
    responses={200: BATCH_PERSONS_RESPONSE, **NATIVE_ERRORS.responses(BATCH_NOT_FOUND, PERSONS_NOT_REQUESTED)},
)
def batch_persons(batch_id: str, service: BatchServiceDep, tenant_id: TenantDep) -> StreamingResponse:
    """A batch's persons (a batch submitted with `persons: true`): one JSON line per batch-wide person, with the
    items' persons it is and when they appear. Complete once the batch is: until then, a person seen in fewer than
    three items may still wait for its id."""
    lines = (batch_person_line(person_id, found) for person_id, found in service.persons(batch_id, tenant_id))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.delete(
    "/batches/{batch_id}",
    response_model=BatchView,
    operation_id="cancelBatch",
    responses=NATIVE_ERRORS.responses(BATCH_NOT_FOUND),
)
def cancel_batch(batch_id: str, service: BatchServiceDep, tenant_id: TenantDep) -> BatchView:
    """Cancel every item not yet final (running ones stop at their next frame); finished ones keep results."""
    return service.cancel(batch_id, tenant_id)
