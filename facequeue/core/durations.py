"""Durations written as a whole number and a unit: the retention setting and `facequeue tenants set-retention`."""

from __future__ import annotations

import re

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in a duration written as a whole number and an optional unit (s, m, h, d): 30d, 720h, 3600."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration such as 30d, 720h, 15m or 3600 (seconds)")
    return int(match[1]) * DURATION_UNITS[match[2] or "s"]
