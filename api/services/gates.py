"""Whether the service takes new work at all: maintenance mode and the switchable features."""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from api.errors import FeatureDisabled, Maintenance
from db import flags
from db.flags import MAINTENANCE_FLAG
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import Settings

MAINTENANCE_MESSAGE = "Service is under maintenance: new tasks are not accepted; polling still works"
_FLAG_CACHE: dict[str, tuple[str | None, float]] = {}  # name -> (value, monotonic expiry)


def check_not_in_maintenance(session: Session, settings: Settings) -> None:
    if settings.maintenance or _flag(session, MAINTENANCE_FLAG, settings) == "on":
        raise Maintenance(MAINTENANCE_MESSAGE)


def _flag(session: Session, name: str, settings: Settings) -> str | None:
    """A service flag, read at most once per FACEQUEUE_FLAG_CACHE_SECONDS per process: it is checked
    on every submit, and flipping it is rare."""
    now = time.monotonic()
    cached = _FLAG_CACHE.get(name)
    if cached is None or now >= cached[1]:
        cached = (flags.get_flag(session, name), now + settings.flag_cache_seconds)
        _FLAG_CACHE[name] = cached
    return cached[0]


def check_features(options: DetectOptions, settings: Settings) -> None:
    for feature in _requested_features(options):
        if feature in settings.disabled_features:
            raise FeatureDisabled(f"Feature '{feature}' is disabled", field=feature)


def _requested_features(options: DetectOptions) -> list[str]:
    """The switchable features a task would use (FACEQUEUE_DISABLED_FEATURES names)."""
    wanted = {
        "upstream": options.detector == "upstream",
        "landmarks90": options.landmarks == "90",
        "persons": options.persons,
        "crops": options.return_face_url,
    }
    return [feature for feature, used in wanted.items() if used]
