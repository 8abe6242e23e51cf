"""Which detector serves a task's frames: local YuNet, the upstream face API, or upstream with local fallback.

    routed = detector_for(mode, settings)            # once per task
    faces = routed.detect(image_bgr, max_side, url)  # once per frame; url: the frame's source URL or None
    per_frame = routed.detect_frames(frames, max_side)  # or a video's frames at once
    routed.served_by, routed.model_version           # who actually served, for the task's result

* ``local``: YuNet.
* ``upstream``: the configured upstream; a failed call (after its retries) or an open circuit fails the task
  with an `UpstreamError`, and so does an upstream that is not configured or is disabled.
* ``auto``: the upstream while its circuit lets calls through; a frame whose call fails (circuit open,
  retries exhausted, the protocol cannot take the frame) is served by YuNet instead, and recorded so.
  Without a configured upstream it is YuNet; with the upstream disabled, YuNet noted so.

Upstream adapters are kept one per upstream per worker process (`shared_upstream`), so their circuit breaker
counts the failures of every task the process runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, get_args

import numpy as np
import structlog

from facequeue.core.settings import Settings
from workers.detectors.registry import get_detector
from workers.detectors.upstream.acedata import AceDataUpstream
from workers.detectors.upstream.akool import AkoolUpstream
from workers.detectors.upstream.failures import Failure, UpstreamError
from workers.vision import Face, FaceDetector, detect_faces, detect_faces_in_frames

log = structlog.get_logger(__name__)

Mode = Literal["local", "upstream", "auto"]
MODES: tuple[Mode, ...] = get_args(Mode)

# Why auto mode served a frame locally, by how the upstream call failed.
FALLBACK_NOTES = {
    Failure.CIRCUIT_OPEN: "upstream unavailable",
    Failure.CANNOT_SERVE: "upstream cannot serve this frame",
}
FAILED_NOTE = "upstream failed"
DISABLED_NOTE = "upstream disabled"


class UpstreamDetector(Protocol):
    """An upstream adapter: not a model (nothing to load, no input size), one guarded call per frame, in
    original-image pixels; `source_url` is the frame's URL, or None."""

    name: str
    model_version: str

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]: ...


ADAPTERS: dict[str, Callable[[Settings], UpstreamDetector]] = {
    "akool": AkoolUpstream,
    "acedata": AceDataUpstream,
}

_shared: dict[tuple, UpstreamDetector] = {}
_shared_lock = threading.Lock()


class RoutedDetector:
    """One task's detector: `detect` per frame, and a record of which detector served how many frames."""

    def __init__(
        self,
        local: FaceDetector,
        upstream: UpstreamDetector | None = None,
        fallback: bool = False,
        local_note: str | None = None,
    ) -> None:
        self.local = local
        self.upstream = upstream
        self.fallback = fallback
        self.local_note = local_note
        self.served: Counter[str] = Counter()  # serving name -> frames, in first-served order
        self._versions: dict[str, str] = {}

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]:
        """Faces of one frame in its own pixels; raises `UpstreamError` only when no fallback is allowed."""
        if self.upstream is None:
            return self._serve_locally(image_bgr, max_side, self.local_note)
        try:
            faces = self.upstream.detect(image_bgr, max_side, source_url)
        except UpstreamError as error:
            if not self.fallback:
                raise
            log.warning("upstream_fallback", upstream=self.upstream.name, failure=error.failure, error=error.detail)
            return self._serve_locally(image_bgr, max_side, FALLBACK_NOTES.get(error.failure, FAILED_NOTE))
        self._record(self.upstream.name, self.upstream.model_version)
        return faces

    def detect_frames(self, images: Sequence[np.ndarray], max_side: int) -> list[list[Face]]:
        """Faces of a video's frames: through the local model at once (its batch axis), or one by one upstream."""
        if self.upstream is not None:
            return [self.detect(image, max_side) for image in images]
        found = detect_faces_in_frames(self.local, images, max_side)
        self._record(_noted(self.local.name, self.local_note), self.local.model_version, len(images))
        return found

    @property
    def served_by(self) -> str:
        """E.g. "upstream:akool", "yunet", "yunet (upstream unavailable)"; mixed tasks join them with " + "."""
        return " + ".join(self.served) or self._planned()[0]

    @property
    def model_version(self) -> str:
        return " + ".join(dict.fromkeys(self._versions.values())) or self._planned()[1]

    @property
    def upstream_frames(self) -> int:
        """Frames the upstream served (what upstream credits are charged for)."""
        return self.served[self.upstream.name] if self.upstream is not None else 0

    def _serve_locally(self, image_bgr: np.ndarray, max_side: int, note: str | None) -> list[Face]:
        faces = detect_faces(self.local, image_bgr, max_side)
        self._record(_noted(self.local.name, note), self.local.model_version)
        return faces

    def _record(self, name: str, model_version: str, frames: int = 1) -> None:
        self.served[name] += frames
        self._versions[name] = model_version

    def _planned(self) -> tuple[str, str]:
        """(name, model_version) of who will serve, for a task that has served no frame yet."""
        if self.upstream is not None:
            return self.upstream.name, self.upstream.model_version
        return _noted(self.local.name, self.local_note), self.local.model_version


def _noted(name: str, note: str | None) -> str:
    return f"{name} ({note})" if note else name


def detector_for(mode: Mode, settings: Settings, local: FaceDetector | None = None) -> RoutedDetector:
    """The detector for one task in `mode`; `upstream` mode without a usable upstream raises `UpstreamError`."""
    if mode not in MODES:
        raise ValueError(f"detector mode must be one of {', '.join(MODES)}, got {mode!r}")
    local = local or get_detector()
    if mode == "local":
        return RoutedDetector(local)
    unusable = upstream_unusable(settings)
    if unusable is None:
        return RoutedDetector(local, shared_upstream(settings), fallback=mode == "auto")
    if mode == "upstream":
        raise unusable
    return RoutedDetector(local, local_note=DISABLED_NOTE if unusable.failure is Failure.DISABLED else None)


def upstream_unusable(settings: Settings) -> UpstreamError | None:
    """Why no upstream may be called at all, or None."""
    protocol = settings.upstream_protocol
    if "upstream" in settings.disabled_features:
        return UpstreamError(protocol, Failure.DISABLED, 'is disabled (FACEQUEUE_DISABLED_FEATURES has "upstream")')
    if not settings.upstream_url:
        return UpstreamError(protocol, Failure.NOT_CONFIGURED, "is not configured (FACEQUEUE_UPSTREAM_URL is unset)")
    return None


def shared_upstream(settings: Settings) -> UpstreamDetector:
    """This process's adapter for the configured upstream: one HTTP client and one circuit breaker per upstream."""
    key = _upstream_key(settings)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ADAPTERS[settings.upstream_protocol](settings)
        return _shared[key]


def _upstream_key(settings: Settings) -> tuple:
    key = settings.upstream_api_key
    return (
        settings.upstream_protocol,
        settings.upstream_url,
        key.get_secret_value() if key else None,
        settings.upstream_connect_timeout,
        settings.upstream_read_timeout,
        settings.upstream_max_attempts,
        settings.upstream_breaker_failures,
        settings.upstream_breaker_reset,
    )
