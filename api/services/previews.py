"""Annotated previews of a succeeded task: one frame (preview.jpg) or all of them in a grid (contact.jpg).

They are drawn on the frames the worker kept (workers/preview_frames.py), so the API never decodes media, and
cached next to them in storage: the first request draws, the next ones read. Frames and previews live under
the task's previews prefix: isolated per tenant like the task, deleted with it, and by the reaper once
FACEQUEUE_PREVIEW_TTL has passed.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from sqlalchemy.orm import Session

from api.errors import NotFound
from api.services.detect import owned_task
from api.services.preview_drawing import CONTACT_CELL_WIDTH, ContactSheet, FrameAnnotations, annotate, encode_jpeg
from db.models import DetectTask, utcnow
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import DetectResult
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, annotated_preview_key, preview_frame_key

# decode flags by reduction factor: JPEGs decode straight to 1/2, 1/4 or 1/8 of their size
REDUCED_DECODE = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class PreviewNotFound(NotFound):
    code = "preview_not_found"


class PreviewService:
    def __init__(self, session: Session, settings: Settings, storage: MediaStorage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage

    def frame_preview(self, task_id: str, tenant_id: str | None, frame: str | None) -> bytes:
        """Frame `frame` (a key of faces_obj; default the first) with its faces drawn on it, as a JPEG."""
        result = self._previewable(owned_task(self.session, task_id, tenant_id))
        keys = _frame_keys(result)
        frame = keys[0] if frame is None else frame
        if frame not in keys:
            raise PreviewNotFound(
                f"frame {frame} is not a frame of detect task {task_id}; its frames are {', '.join(keys)}", "frame"
            )
        return self._cached(
            annotated_preview_key(task_id, f"frame-{frame}"), lambda: self._draw(task_id, result, frame)
        )

    def contact_sheet(self, task_id: str, tenant_id: str | None) -> bytes:
        """Every frame of the task, annotated, in a grid (frame key, time and face count under each)."""
        result = self._previewable(owned_task(self.session, task_id, tenant_id))
        return self._cached(annotated_preview_key(task_id, "contact"), lambda: self._draw_sheet(task_id, result))

    def _previewable(self, task: DetectTask) -> DetectResult:
        if task.status != TaskStatus.SUCCEEDED:
            raise PreviewNotFound(f"detect task {task.id} is {task.status}: previews exist once it has succeeded")
        if task.result is None:
            raise PreviewNotFound(f"the result of detect task {task.id} was deleted, and its previews with it")
        result = DetectResult.model_validate(task.result)
        if not result.preview_frames:
            raise PreviewNotFound(f"detect task {task.id} kept no frames for previews (FACEQUEUE_PREVIEW_TTL was 0)")
        if task.previews_until is None or task.previews_until < utcnow():
            raise PreviewNotFound(
                f"the preview frames of detect task {task.id} were deleted {self.settings.preview_ttl:g} s after it "
                "succeeded (FACEQUEUE_PREVIEW_TTL)"
            )
        return result

    def _cached(self, key: str, draw: Callable[[], np.ndarray]) -> bytes:
        try:
            return self.storage.read_bytes(key)
        except FileNotFoundError:
            jpeg = encode_jpeg(draw())
            self.storage.put_bytes(key, jpeg, "image/jpeg")
            return jpeg

    def _kept_frame(self, task_id: str, frame: str, reduction: int = 1) -> np.ndarray:
        """The frame as the worker kept it, decoded at 1/`reduction` of its size (libjpeg scales as it decodes)."""
        try:
            data = self.storage.read_bytes(preview_frame_key(task_id, frame))
        except FileNotFoundError as error:
            raise PreviewNotFound(f"the preview frames of detect task {task_id} are no longer stored") from error
        return cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_DECODE[reduction])

    def _draw(self, task_id: str, result: DetectResult, frame: str) -> np.ndarray:
        return annotate(self._kept_frame(task_id, frame), _annotations(result, frame), result.preview_frames[frame])

    def _draw_sheet(self, task_id: str, result: DetectResult) -> np.ndarray:
        keys = _frame_keys(result)
        sheet = None
        for frame in keys:
            scale = result.preview_frames[frame]
            # decoded just large enough for its cell: a quarter of the pixels' work for 1280 px frames
            reduction = max(
                (factor for factor in REDUCED_DECODE if result.media.width * scale / factor >= CONTACT_CELL_WIDTH),
                default=1,
            )
            image = self._kept_frame(task_id, frame, reduction)
            if sheet is None:
                sheet = ContactSheet(len(keys), image.shape[0] / image.shape[1])
            entry = result.faces_obj[frame]
            when = "" if entry.frame_time is None else f"  {entry.frame_time:.2f} s"
            caption = f"#{frame}{when}  {len(entry.region)} face{'' if len(entry.region) == 1 else 's'}"
            sheet.add(caption, image, _annotations(result, frame), scale / reduction)
        return sheet.image


def _frame_keys(result: DetectResult) -> list[str]:
    """The frames kept, in the order they were analysed."""
    return sorted((key for key in result.faces_obj if key in (result.preview_frames or {})), key=int)


def _annotations(result: DetectResult, frame: str) -> FrameAnnotations:
    entry = result.faces_obj[frame]
    shapes = result.face_shape_set.get(frame) if result.face_shape_set else None
    return FrameAnnotations(entry, result.scores.get(frame, []), shapes, _person_ids(result, frame))


def _person_ids(result: DetectResult, frame: str) -> list[str | None]:
    """Each face's person: the appearance in this frame whose box overlaps the face's region most."""
    seen = [
        (person.person_id, appearance.bbox)
        for person in result.persons or []
        for appearance in person.appearances
        if appearance.frame_idx == int(frame)
    ]
    names: list[str | None] = []
    for x, y, w, h in result.faces_obj[frame].region:
        overlaps = [(_iou((x, y, x + w, y + h), box), person_id) for person_id, box in seen]
        best = max(overlaps, default=(0.0, None))
        names.append(best[1] if best[0] > 0.5 else None)
    return names


def _iou(a: tuple[int, int, int, int], b: list[int]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
