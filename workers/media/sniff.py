"""Tell images from videos by their bytes; file names and Content-Type headers are only hints."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import filetype
from PIL import Image

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.media_kinds import MediaKind

# Image types Pillow decodes; filetype also recognises HEIC, JPEG XR, raw camera files... which it cannot.
SUPPORTED_IMAGE_MIMES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/apng",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/tiff",
        "image/x-icon",
        "image/avif",
    }
)
# Formats that can hold an animation; for these Pillow is asked how many frames there are.
MAYBE_ANIMATED_MIMES = frozenset({"image/gif", "image/webp", "image/png", "image/apng"})

_HEAD_BYTES = 8192  # as much as filetype's matchers look at
_TEXT_PROBE_BYTES = 512


@dataclass(frozen=True)
class SniffedMedia:
    kind: MediaKind
    mime: str
    animated: bool


def sniff(path: Path) -> SniffedMedia:
    """Classify the file by its content; an animated image is a video (its frames get sampled)."""
    head = _read_head(path)
    if not head:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "empty file")
    guess = filetype.guess(head)
    if guess is None:
        raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, _describe_unknown(head))
    mime = guess.mime
    if mime.startswith("video/"):
        return SniffedMedia(kind="video", mime=mime, animated=False)
    if mime in SUPPORTED_IMAGE_MIMES:
        animated = mime in MAYBE_ANIMATED_MIMES and _is_animated(path)
        return SniffedMedia(kind="video" if animated else "image", mime=mime, animated=animated)
    raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, f"{mime} is not a supported image or video type")


def _read_head(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(_HEAD_BYTES)


def _describe_unknown(head: bytes) -> str:
    text = _as_text(head[:_TEXT_PROBE_BYTES])
    if text is None:
        return "unrecognised bytes, not an image or video"
    return f"text, not an image or video (starts with {text[:40]!r})"


def _as_text(sample: bytes) -> str | None:
    """The sample as UTF-8 text, or None for binary; a character cut at the end is not an error."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _is_animated(path: Path) -> bool:
    """More than one frame, according to Pillow; a file it cannot open counts as still (decoding will say why)."""
    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return False
