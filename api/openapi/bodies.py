"""Bodies FastAPI can't infer: POST /v1/detect also takes the file itself (api/uploads.py), POST /v1/batches
reads its body itself (JSON, or a JSONL manifest streamed to disk), a batch's results stream out as JSONL, and
the previews are JPEGs.

Each non-JSON body is a binary string (`format: binary`): that is what makes a generated client send and
return it as bytes. openapi-python-client reads only `format`, not OpenAPI 3.1's contentMediaType, and knows
no media type beyond JSON, text/* and application/octet-stream: clients/openapi-python-client.yaml maps
image/jpeg and JSONL onto the last."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from api.collection_schemas import BatchMatchLine, BatchPersonLine
from api.openapi.collection_examples import BATCH_MATCH_LINES, BATCH_PERSON_LINES
from api.openapi.examples import BATCH_RESULT_LINES, MANIFEST_ITEMS
from api.openapi.responses import schema_ref
from api.openapi.shapes import BatchCreate, BatchResultLine
from api.schemas import DetectUploadQuery
from api.uploads import MULTIPART, OCTET_STREAM

JSONL = "application/x-ndjson"  # the name in the document; api/limits.py accepts its aliases too
BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def _lines(models: list[BaseModel]) -> str:
    return "".join(model.model_dump_json(exclude_unset=True) + "\n" for model in models)


def _upload_parameters() -> list[dict[str, Any]]:
    """DetectUploadQuery's fields as query parameters: they apply to uploads only (JSON carries them in the body)."""
    schema = DetectUploadQuery.model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        field = {key: value for key, value in field.items() if key != "title"}
        description = field.pop("description", "")
        described = f"Uploads only: {description}"
        parameters.append({"name": name, "in": "query", "required": False, "schema": field, "description": described})
    return parameters


_UPLOADED_FILE = "The image or video file itself, at most FACEQUEUE_MAX_UPLOAD_BYTES"
DETECT_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            OCTET_STREAM: {"schema": {**BINARY, "description": f"{_UPLOADED_FILE} (sent as image/* or video/* too)"}},
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {**BINARY, "description": _UPLOADED_FILE}},
                    "additionalProperties": False,
                }
            },
        }
    },
    "parameters": _upload_parameters(),
}

BATCH_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": schema_ref(BatchCreate)},
            JSONL: {
                "schema": {
                    **BINARY,
                    "description": "A manifest: one item per line, each a JSON object with the fields of an item "
                    "of BatchCreate; ?defaults=, ?callback_url=, ?search= and ?persons= stand for the JSON body's "
                    "other fields. "
                    "Up to FACEQUEUE_MAX_MANIFEST_BYTES, streamed to disk as it arrives.",
                },
                "example": _lines(MANIFEST_ITEMS),
            },
        },
    }
}


def _jsonl_response(description: str, line: type[BaseModel], examples: list[BaseModel]) -> dict[str, Any]:
    schema = {**BINARY, "description": f"Lines of {schema_ref(line)['$ref']}"}
    return {"description": description, "content": {JSONL: {"schema": schema, "example": _lines(examples)}}}


BATCH_RESULTS_RESPONSE = _jsonl_response(
    "One JSON object per line (BatchResultLine), one line per item, in submit order",
    BatchResultLine,
    BATCH_RESULT_LINES,
)
BATCH_MATCHES_RESPONSE = _jsonl_response(
    "One JSON object per line (BatchMatchLine): each item with a match, in submit order",
    BatchMatchLine,
    BATCH_MATCH_LINES,
)

BATCH_PERSONS_RESPONSE = _jsonl_response(
    "One JSON object per line (BatchPersonLine): each batch-wide person, by its first item",
    BatchPersonLine,
    BATCH_PERSON_LINES,
)

JPEG_RESPONSE: dict[str, Any] = {"description": "an annotated JPEG", "content": {"image/jpeg": {"schema": BINARY}}}
