"""The two media kinds, and the hint a file name gives about which one a URL holds."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

MediaKind = Literal["image", "video"]

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "jpe", "png", "gif", "webp", "bmp", "tif", "tiff", "ico", "avif"})
VIDEO_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "avi", "webm", "mkv", "mpg", "mpeg", "flv", "wmv", "3gp", "ogv"})


def kind_from_extension(url_or_name: str) -> MediaKind | None:
    """A hint from the name's extension (query and fragment ignored); never a substitute for sniffing the bytes."""
    suffix = PurePosixPath(urlsplit(url_or_name).path).suffix.lower().lstrip(".")
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None
