"""Decode a still image into the BGR uint8 array the detectors take, safely and upright."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from workers.media.errors import failure_reason

# Single-channel modes wider than 8 bits; Pillow's convert() would clip them at 255 instead of scaling.
WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
WHITE = (255, 255, 255, 255)
# libjpeg decodes straight to 1/8, 1/4 or 1/2 of the size (scaling its inverse DCT), largest reduction first.
JPEG_REDUCTIONS = (8, 4, 2)
# EXIF orientations that swap width and height.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})

# What a broken file makes Pillow raise while opening or decoding (EOFError and SyntaxError included).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


@dataclass(frozen=True, eq=False)
class ScaledImage:
    """An image decoded at 1/``scale`` of its size; ``width`` x ``height`` is that size, upright."""

    image_bgr: np.ndarray = field(repr=False)
    # File pixels per decoded pixel on both axes: decoded pixel i covers file pixels [i * scale, (i + 1) * scale).
    scale: int
    width: int
    height: int


def decode_image(path: Path, settings: Settings) -> np.ndarray:
    """The image at ``path`` as an (H, W, 3) BGR uint8 array, EXIF orientation applied."""
    return decode_image_scaled(path, settings, working_side=None).image_bgr


def decode_image_scaled(path: Path, settings: Settings, working_side: int | None) -> ScaledImage:
    """Like ``decode_image``, but a JPEG is decoded at the smallest of libjpeg's reductions whose long side
    still reaches ``working_side`` (None: full size), since the detector downscales to that side anyway.

    A 632-byte JPEG claiming 8000x8000 is decoded for a 1280 working side at 2000x2000; measured: 39 MB peak
    and 0.13 s. Whole it takes 0.6 GB and 4 s (0.9 GB before upright RGB images were no longer copied).
    """
    if path.stat().st_size == 0:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "empty file")
    with _open(path) as image:
        _check_pixel_count(image, settings.max_image_pixels)
        width, height = image.size
        scale = _reduce_jpeg(image, working_side) if working_side else 1
        if _load_upright(image):
            width, height = height, width
        bgr = np.ascontiguousarray(np.asarray(_to_rgb(image))[:, :, ::-1])
    return ScaledImage(image_bgr=bgr, scale=scale, width=width, height=height)


def _open(path: Path) -> Image.Image:
    """Read only the header: size and mode are known, no pixel is decoded yet."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise TaskError(ErrorCode.MEDIA_LIMIT_EXCEEDED, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "not a decodable image: unrecognised or damaged header") from exc
    except _DECODE_ERRORS as exc:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"damaged image header: {failure_reason(exc)}") from exc


def _check_pixel_count(image: Image.Image, max_pixels: int) -> None:
    """Refuse decompression bombs before allocating anything for their pixels."""
    width, height = image.size
    if width * height > max_pixels:
        raise TaskError(
            ErrorCode.MEDIA_LIMIT_EXCEEDED,
            f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}",
        )


def _reduce_jpeg(image: Image.Image, working_side: int) -> int:
    """Have a JPEG decoded at 1/scale of its size, long side still at least ``working_side``; the scale."""
    width, height = image.size
    long_side = max(width, height)
    reduction = next((r for r in JPEG_REDUCTIONS if -(-long_side // r) >= working_side), 1)
    if reduction == 1:
        return 1
    # Pillow picks the largest reduction that keeps both sides at least this large (None: not a JPEG).
    drafted = image.draft(None, (max(1, width // reduction), max(1, height // reduction)))
    return 1 if drafted is None else round(width / drafted[1][2])


def _load_upright(image: Image.Image) -> bool:
    """Decode the pixels and apply the EXIF orientation in place; whether that swapped width and height."""
    try:
        image.load()
        swapped = image.getexif().get(ExifTags.Base.Orientation) in _TRANSPOSING_ORIENTATIONS
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy of an image that is already upright
    except Image.DecompressionBombError as exc:
        raise TaskError(ErrorCode.MEDIA_LIMIT_EXCEEDED, str(exc)) from exc
    except _DECODE_ERRORS as exc:
        detail = f"{image.format or 'image'} data is truncated or corrupt: {failure_reason(exc)}"
        raise TaskError(ErrorCode.CORRUPT_MEDIA, detail) from exc
    return swapped


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in WIDE_GRAY_MODES:
        image = _wide_gray_to_8bit(image)
    if image.has_transparency_data:
        return _flatten_on_white(image)
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise TaskError(ErrorCode.UNSUPPORTED_MEDIA, f"image mode {image.mode} cannot be converted to RGB") from exc


def _wide_gray_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 0..65535 onto 0..255 (32-bit "I" is read as 16-bit, which is what PNG and TIFF use it for)."""
    values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535)
    return Image.fromarray(np.rint(values / 257.0).astype(np.uint8))


def _flatten_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, WHITE)
    background.alpha_composite(rgba)
    return background.convert("RGB")
