"""Decode a still image into the BGR uint8 array the detectors take, safely and upright."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings

# Single-channel modes wider than 8 bits; Pillow's convert() would clip them at 255 instead of scaling.
WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
WHITE = (255, 255, 255, 255)

# What a broken file makes Pillow raise while opening or decoding (EOFError and SyntaxError included).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def decode_image(path: Path, settings: Settings) -> np.ndarray:
    """The image at ``path`` as an (H, W, 3) BGR uint8 array, EXIF orientation applied."""
    if path.stat().st_size == 0:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "empty file")
    return _decode(path, settings)


def decode_image_bytes(data: bytes, settings: Settings) -> np.ndarray:
    """Like ``decode_image``, for an image held in memory."""
    if not data:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "empty file")
    return _decode(io.BytesIO(data), settings)


def _decode(source: Path | BinaryIO, settings: Settings) -> np.ndarray:
    with _open(source) as image:
        _check_pixel_count(image, settings.max_image_pixels)
        rgb = _to_rgb(_load_upright(image))
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def _open(source: Path | BinaryIO) -> Image.Image:
    """Read only the header: size and mode are known, no pixel is decoded yet."""
    try:
        return Image.open(source)
    except Image.DecompressionBombError as exc:
        raise TaskError(ErrorCode.MEDIA_LIMIT_EXCEEDED, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, "not a decodable image: unrecognised or damaged header") from exc
    except _DECODE_ERRORS as exc:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"damaged image header: {exc}") from exc


def _check_pixel_count(image: Image.Image, max_pixels: int) -> None:
    """Refuse decompression bombs before allocating anything for their pixels."""
    width, height = image.size
    if width * height > max_pixels:
        raise TaskError(
            ErrorCode.MEDIA_LIMIT_EXCEEDED,
            f"image is {width}x{height} = {width * height} pixels, the limit is {max_pixels}",
        )


def _load_upright(image: Image.Image) -> Image.Image:
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise TaskError(ErrorCode.MEDIA_LIMIT_EXCEEDED, str(exc)) from exc
    except _DECODE_ERRORS as exc:
        detail = f"{image.format or 'image'} data is truncated or corrupt: {exc}"
        raise TaskError(ErrorCode.CORRUPT_MEDIA, detail) from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in WIDE_GRAY_MODES:
        image = _wide_gray_to_8bit(image)
    if image.has_transparency_data:
        return _flatten_on_white(image)
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
