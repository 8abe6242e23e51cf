"""The frames a task keeps for annotated previews (GET /v1/detect/{id}/preview.jpg and contact.jpg).

Each analysed frame is downscaled to PREVIEW_MAX_SIDE and JPEG-encoded as the run goes (about 2 ms; 70-130 KiB
for the shared 1280x720 clips, so at most ~13 MiB held for 100 frames), and all of them are stored under the
task's previews prefix once it has succeeded, before its final write: a run that fails, is canceled or is
handed to another worker stores none. The API only draws on them and never decodes a video. The reaper
deletes them FACEQUEUE_PREVIEW_TTL after the success.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import cv2
import numpy as np

from db.models import utcnow
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, preview_frame_key

PREVIEW_MAX_SIDE = 1280  # long side of a kept frame: the detector's default working size
PREVIEW_JPEG_QUALITY = 85
STORE_CONCURRENCY = 4  # PUTs at once: S3 answers each in tens of ms, so 100 frames take a second, not five


class PreviewFrames:
    def __init__(self, task_id: str, storage: MediaStorage, settings: Settings) -> None:
        self.task_id = task_id
        self.storage = storage
        self.enabled = settings.preview_ttl > 0
        self._jpegs: dict[str, bytes] = {}
        self._scales: dict[str, float] = {}  # frame key -> kept width over the frame's width

    def keep(self, frame: str, image_bgr: np.ndarray, file_width: int) -> None:
        """`file_width`: the frame's width in the pixels results are given in (a JPEG decoded reduced is narrower)."""
        if not self.enabled:
            return
        height, width = image_bgr.shape[:2]
        scale = min(1.0, PREVIEW_MAX_SIDE / max(height, width))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_JPEG_QUALITY])[1]
        self._jpegs[frame] = encoded.tobytes()
        self._scales[frame] = image_bgr.shape[1] / file_width

    def store(self) -> dict[str, float] | None:
        """Store the kept frames; their scales, for the result."""
        if not self._jpegs:
            return None

        def put(item: tuple[str, bytes]) -> None:
            self.storage.put_bytes(preview_frame_key(self.task_id, item[0]), item[1], "image/jpeg")

        with ThreadPoolExecutor(max_workers=STORE_CONCURRENCY) as pool:
            list(pool.map(put, self._jpegs.items()))
        self._jpegs.clear()
        return self._scales


def previews_until(settings: Settings) -> datetime:
    return utcnow() + timedelta(seconds=settings.preview_ttl)
