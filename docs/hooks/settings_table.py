"""MkDocs hook: the configuration page's table, rendered from the settings class at build time, so it can't drift.

A page holds the marker below; the hook replaces it with one row per field of `facequeue.core.settings.Settings`:
its environment variable, type, default and description."""

from __future__ import annotations

import types
import typing
from pathlib import Path

from annotated_types import Ge, Gt
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from facequeue.core.settings import Settings

MARKER = "<!-- settings-table -->"
TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", SecretStr: "secret"}


def on_page_markdown(markdown: str, **_: object) -> str:
    return markdown.replace(MARKER, settings_table()) if MARKER in markdown else markdown


def settings_table() -> str:
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    prefix = Settings.model_config["env_prefix"]
    for name, field in Settings.model_fields.items():
        cells = (f"`{prefix}{name.upper()}`", type_text(field), default_text(field), field.description or "")
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def type_text(field: FieldInfo) -> str:
    text = _annotation_text(field.annotation)
    for bound in field.metadata:
        if isinstance(bound, Ge):
            text += f" ≥ {bound.ge}"
        elif isinstance(bound, Gt):
            text += f" > {bound.gt}"
    return text


def _annotation_text(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " or ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is list:
        return "comma-separated list"
    if origin in (types.UnionType, typing.Union):  # `X | None`: unset is the default, said in that column
        return " or ".join(_annotation_text(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, list):
        value = ",".join(str(int(item) if isinstance(item, float) and item.is_integer() else item) for item in value)
    return f"`{value}`" if value != "" else "empty"
