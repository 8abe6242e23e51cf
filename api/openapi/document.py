"""app.openapi(): FastAPI's document, finished as a contract.

The routes declare their own statuses, bodies and security (api/openapi/responses.py, security.py); here
the document gets what no single route owns: the components only declared responses refer to, an example
in every schema (api/openapi/examples.py), the tags, and no trace of FastAPI's own 422 shape, which no
route answers with (every API renders validation errors its own way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from api.openapi.examples import EXAMPLES
from api.openapi.shapes import DOCUMENT_ONLY_REQUESTS, DOCUMENT_ONLY_RESPONSES

REF_PREFIX = "#/components/schemas/"
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
EXAMPLE_KEYS = {"example", "examples"}
TAGS = [
    {"name": "native", "description": "Asynchronous detection tasks: submit, poll, list, cancel, delete"},
    {"name": "batches", "description": "Thousands of tasks in one request (JSON or a JSONL manifest)"},
    {"name": "collections", "description": "Face collections: faces indexed by detect tasks, searched by face"},
    {"name": "webhooks", "description": "The tenant's webhook endpoint and secret, and every delivery attempt"},
    {"name": "akool", "description": "Akool's detect API (seeds 000, 001, 003): synchronous"},
    {"name": "crun", "description": "crun's face-detection tasks (seed 004): asynchronous, {code, message, data}"},
    {"name": "acedata", "description": "AceData's 90-point face analysis (seed 002): synchronous"},
    {"name": "health", "description": "Liveness and readiness probes (no API key)"},
]


def operation_id(route: APIRoute) -> str:
    """A route's operationId when it names none itself: its function's name in camelCase."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def install(app: FastAPI) -> None:
    """Make app.openapi() (and /openapi.json) serve the finished document, built once."""
    fastapi_document: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(fastapi_document(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # FastAPI's documented way to extend the document


def finish(document: dict[str, Any], routes: list[BaseRoute]) -> dict[str, Any]:
    _restore_declared_examples(document, routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _document_only_schemas().items():
        schemas.setdefault(name, schema)
    for operation in _operations(document):
        responses = operation["responses"]
        for status in [status for status, response in responses.items() if _is_fastapi_validation(response)]:
            del responses[status]
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    for name, schema in schemas.items():
        if "examples" not in schema:
            example = schema["enum"][0] if "enum" in schema else EXAMPLES.get(name.split("-")[0])
            if example is not None:  # tests/test_openapi.py names any schema left without one
                schema["examples"] = [example]
    document["tags"] = TAGS
    return document


def _restore_declared_examples(document: dict[str, Any], routes: list[BaseRoute]) -> None:
    """FastAPI writes the document without null values (exclude_none), examples included: `"field": null`
    would be gone from every error example. Put the responses' examples back as the routes declared them."""
    for route in iter_route_contexts(routes):  # routes as included: prefixes and router-level responses applied
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            documented = document["paths"][route.path_format][method.lower()]["responses"]
            for status, declared in route.responses.items():
                for media_type, content in declared.get("content", {}).items():
                    for key in EXAMPLE_KEYS & content.keys():
                        documented[str(status)]["content"][media_type][key] = content[key]


def _document_only_schemas() -> dict[str, Any]:
    models = [(model, "validation") for model in DOCUMENT_ONLY_REQUESTS]
    models += [(model, "serialization") for model in DOCUMENT_ONLY_RESPONSES]
    _, schema = models_json_schema(models, ref_template=REF_PREFIX + "{model}")
    return schema.get("$defs", {})


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [operation for path in document.get("paths", {}).values() for operation in path.values()]


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref") == REF_PREFIX + "HTTPValidationError"
