"""JSON the API parses itself (batch bodies, JSONL lines, ?defaults=), with a nesting cap and clear errors.

FastAPI parses the other routes' bodies; its failures (RecursionError, UnicodeDecodeError) come back
through `json_error` too (api/compat.py), so every API names the problem the same way.
"""

from __future__ import annotations

import json
from typing import Any

from api.errors import InvalidJson

# The deepest valid document nests 4 levels ({"items": [{"frame_urls": [...]}]}). Python's JSON decoder
# recurses once per level and fails near sys.getrecursionlimit() (1,000) with a RecursionError, and so
# can any code that walks what it returned: 32 leaves room for clients and stays far from both.
MAX_JSON_DEPTH = 32


def parse_json(raw: bytes | str, name: str, field: str | None = None) -> Any:
    """`raw` decoded as JSON (bytes may be UTF-8, -16 or -32, as json.loads detects), at most MAX_JSON_DEPTH deep;
    `name` says what it is in an error message, `field` names it in the error (default: `name`)."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise json_error(name, error, field) from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise json_error(name, RecursionError(), field)
    return value


def json_error(name: str, error: Exception, field: str | None = None) -> InvalidJson:
    field = field or name
    if isinstance(error, RecursionError):
        return InvalidJson(f"{name} nests arrays or objects deeper than {MAX_JSON_DEPTH} levels", field=field)
    if isinstance(error, UnicodeDecodeError):
        return InvalidJson(f"{name} is not valid JSON: byte {error.start} is not UTF-8 text", field=field)
    return InvalidJson(f"{name} is not valid JSON: {error}", field=field)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists or dicts more than `limit` levels (iterative: no recursion to exhaust)."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
