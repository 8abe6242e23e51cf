"""Checks of an upstream's JSON body, each failure naming the exact path, e.g. "faces_obj.0.region[1] has 3 numbers,
expected 4"; both adapters build their faces with them.

Neither protocol reports a confidence, so upstream faces carry ``UPSTREAM_SCORE`` (1.0: the upstream asserts a face).
"""

from __future__ import annotations

import math
from typing import Any

from workers.detectors.upstream.failures import malformed

UPSTREAM_SCORE = 1.0
# A face cut by the frame's edge sticks out of it, but never by more than half the image.
BOX_MARGIN = 0.5


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def get_field(value: Any, key: str, path: str) -> Any:
    where = f"{path}.{key}" if path else key
    if not isinstance(value, dict):
        raise malformed(f"{path or 'the body'} is {_kind(value)}, not an object")
    if key not in value:
        raise malformed(f"{where} is missing")
    return value[key]


def as_list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise malformed(f"{path} is {_kind(value)}, not a list")
    return value


def as_number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        shown = repr(value) if isinstance(value, float) else _kind(value)  # NaN and Infinity parse as floats
        raise malformed(f"{path} is {shown}, not a finite number")
    return float(value)


def as_integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise malformed(f"{path} is {_kind(value)}, not an integer")
    return value


def as_numbers(value: Any, count: int, path: str) -> list[float]:
    items = as_list(value, path)
    if len(items) != count:
        raise malformed(f"{path} has {len(items)} numbers, expected {count}")
    return [as_number(item, f"{path}[{index}]") for index, item in enumerate(items)]


def checked_box(box: tuple[float, float, float, float], path: str, width: int, height: int) -> tuple[float, ...]:
    """A positive-size box that overlaps the image and sticks out of it by at most BOX_MARGIN of its sides."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise malformed(f"{path} has a non-positive size {w:g}x{h:g}")
    overlaps = x < width and y < height and x + w > 0 and y + h > 0
    near = (
        x >= -BOX_MARGIN * width
        and y >= -BOX_MARGIN * height
        and x + w <= (1 + BOX_MARGIN) * width
        and y + h <= (1 + BOX_MARGIN) * height
    )
    if not (overlaps and near):
        raise malformed(f"{path} [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image")
    return box
