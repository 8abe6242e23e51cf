"""Stored tasks and results -> what clients see, in each API's shape: storage keys become expiring links,
internal fields are dropped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request

from api.schemas import DetectResultView, DetectTaskView, PersonView
from db.batch_persons import Appearance
from db.models import DetectTask
from facequeue.core.enums import TaskStatus
from facequeue.core.errors import BASE_MESSAGES, ErrorCode
from facequeue.core.schemas import DetectResult, FaceFrame, Person
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage

LinkFn = Callable[[str], str]
FETCH_FAILURE_CODES = {
    ErrorCode.URL_FORBIDDEN,
    ErrorCode.DOWNLOAD_FAILED,
    ErrorCode.MEDIA_TOO_LARGE,
    ErrorCode.INVALID_URL,
}
CRUN_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def link_maker(storage: MediaStorage, settings: Settings, request: Request) -> LinkFn:
    base_url = settings.public_base(str(request.base_url))
    return lambda key: storage.url_for(key, base_url)


def frames_with_links(result: DetectResult, link: LinkFn) -> dict[str, FaceFrame]:
    """faces_obj with `face_urls` filled from the stored crop keys (seed 000, return_face_url)."""
    if result.crop_keys is None:
        return result.faces_obj
    return {
        key: frame.model_copy(update={"face_urls": [link(crop) for crop in result.crop_keys.get(key, [])]})
        for key, frame in result.faces_obj.items()
    }


def person_view(person: Person, link: LinkFn) -> PersonView:
    return PersonView(
        **person.model_dump(exclude={"face_key"}), face_url=link(person.face_key) if person.face_key else None
    )


def result_view(result: DetectResult, link: LinkFn) -> DetectResultView:
    return DetectResultView(
        faces_obj=frames_with_links(result, link),
        scores=result.scores,
        media=result.media,
        detector=result.detector,
        frame_count=result.frame_count,
        face_shape_set=result.face_shape_set,
        persons=[person_view(person, link) for person in result.persons] if result.persons is not None else None,
        index=result.index,
        matches=result.matches,
        person_matches=result.person_matches,
    )


def task_view(task: DetectTask, link: LinkFn) -> DetectTaskView:
    result = result_view(DetectResult.model_validate(task.result), link) if task.result else None
    return DetectTaskView.of(task, result)


def batch_item_line(task: DetectTask, link: LinkFn) -> bytes:
    """One JSONL line of a batch's results."""
    result = (
        result_view(DetectResult.model_validate(task.result), link).model_dump(mode="json") if task.result else None
    )
    error = {"code": task.error_code, "message": task.error_msg} if task.error_code else None
    line = {
        "position": task.batch_position,
        "name": task.item_name,
        "detect_task_id": task.id,
        "status": task.status,
        "result": result,
        "error": error,
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def batch_match_line(task: DetectTask, external_id: str | None) -> bytes | None:
    """One JSONL line of a batch's matches: the item's faces that matched a collection face (of `external_id`,
    if given); None when none did."""
    result = task.result or {}
    found = []
    for frame, faces in (result.get("matches") or {}).items():
        frame_time = result["faces_obj"][frame]["frame_time"]
        for index, matches in enumerate(faces):
            found += [
                {"frame": frame, "frame_time": frame_time, "index": index, **match}
                for match in matches
                if external_id is None or match["external_id"] == external_id
            ]
    if not found:
        return None
    line = {"position": task.batch_position, "name": task.item_name, "detect_task_id": task.id, "matches": found}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def batch_person_line(batch_person_id: str, appearances: list[Appearance]) -> bytes:
    """One JSONL line of a batch's persons: a batch-wide person and the items' persons it is."""
    line = {"batch_person_id": batch_person_id, "items": [asdict(appearance) for appearance in appearances]}
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


# --- compat APIs --------------------------------------------------------------------------------


def fetch_failed(task: DetectTask) -> bool:
    """The media could not be fetched (Akool's analyze_frames and AceData name this failure apart)."""
    return task.error_code in FETCH_FAILURE_CODES


def akool_failure_message(task: DetectTask) -> str:
    if task.status == TaskStatus.CANCELED:
        return "Task was canceled"
    code = ErrorCode(task.error_code)
    return BASE_MESSAGES[code] if code in BASE_MESSAGES else task.error_msg or "Detection failed"


def crun_result(task: DetectTask, link: LinkFn, settings: Settings) -> dict[str, Any]:
    """A succeeded task as crun's `data.result`; its detect_id expires FACEQUEUE_DETECT_ID_TTL after the finish."""
    result = DetectResult.model_validate(task.result)
    persons = sorted(result.persons or [], key=lambda person: person.index)
    expired = task.finished_at + timedelta(seconds=settings.detect_id_ttl) < datetime.now(UTC)
    return {
        "id": task.detect_id,
        "status": "succeed",
        "type": "face_detect",
        "hair_id": None,
        "faces": [{"id": number, "link": person_view(person, link).face_url} for number, person in enumerate(persons)],
        "started_at": task.started_at.strftime(CRUN_TIME_FORMAT),
        "finished_at": task.finished_at.strftime(CRUN_TIME_FORMAT),
        "error": "detect_id expired" if expired else None,
    }
