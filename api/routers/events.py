"""Live progress of one task as Server-Sent Events: no polling, partial results while a video runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from api.deps import CallerDep, EventHubDep, LinkDep, SettingsDep
from api.openapi.responses import CALLER_GATES, NATIVE_ERRORS
from api.services.task_stream import last_event_id, open_task_stream

router = APIRouter(prefix="/v1", tags=["native"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise hold events back in its buffer
}


@router.get(
    "/detect/{detect_task_id}/events",
    response_class=StreamingResponse,
    operation_id="streamDetectTaskEvents",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "status, progress and final events"},
        **NATIVE_ERRORS.responses(404, 422),
    },
)
async def task_events(
    detect_task_id: str,
    caller: CallerDep,
    hub: EventHubDep,
    link: LinkDep,
    settings: SettingsDep,
    request: Request,
    last_event: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """`status` on each change of status, `progress` for each finished frame (its faces_obj entry; the event id
    counts the frames), then one `final` with the result's URL or the error, and the stream closes. Send
    `Last-Event-ID` to resume after the frames already seen. A revoked API key ends the stream with one
    `unauthorized` event (checked every FACEQUEUE_EVENTS_HEARTBEAT seconds)."""
    result_url = f"{settings.public_base(str(request.base_url)).rstrip('/')}/v1/detect/{detect_task_id}"
    stream = await open_task_stream(
        hub, detect_task_id, caller, last_event_id(last_event), link, result_url, settings.events_heartbeat
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=STREAM_HEADERS)
