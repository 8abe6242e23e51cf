"""The OpenAPI document as a contract (issue 12, section 3): a valid OpenAPI 3.1 document with both key
schemes, each route's statuses in its API's own error shape, an example in every schema that fits it,
readable operationIds and tags, the batch bodies, and nothing of FastAPI's own 422 shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from api.app import create_app
from api.auth import MISSING_KEY
from api.openapi.document import TAGS
from facequeue.core.schemas import FaceFrame
from tests.test_tenants import make_client, new_key

GATES = {"401", "429", "503"}
SUBMIT = {"402", "455", "505"}
NATIVE, BATCHES, COLLECTIONS, WEBHOOKS, AKOOL, CRUN, ACEDATA, HEALTH = (tag["name"] for tag in TAGS)
TASK = "/v1/detect/{detect_task_id}"
ENDPOINT = "/v1/webhook-endpoint"
COLLECTION = "/v1/collections/{collection_id}"
AKOOL_API = "/interface/detect-api"
CRUN_API = "/api/v1/client/job"
# (method, path) -> operationId, tag, every status the route answers
ROUTES: dict[tuple[str, str], tuple[str, str, set[str]]] = {
    ("get", "/healthz"): ("checkLiveness", HEALTH, {"200"}),
    ("get", "/readyz"): ("checkReadiness", HEALTH, {"200", "503"}),
    ("post", "/v1/detect"): ("submitDetectTask", NATIVE, {"202", "404", "409", "413", "422"} | GATES | SUBMIT),
    ("get", "/v1/detect"): ("listDetectTasks", NATIVE, {"200", "422"} | GATES),
    ("get", TASK): ("getDetectTask", NATIVE, {"200", "404"} | GATES),
    ("delete", TASK): ("deleteDetectTask", NATIVE, {"200", "404"} | GATES),
    ("post", f"{TASK}/cancel"): ("cancelDetectTask", NATIVE, {"200", "404", "409"} | GATES),
    ("get", f"{TASK}/events"): ("streamDetectTaskEvents", NATIVE, {"200", "404", "422"} | GATES),
    ("get", f"{TASK}/preview.jpg"): ("getFramePreview", NATIVE, {"200", "404", "422"} | GATES),
    ("get", f"{TASK}/contact.jpg"): ("getContactSheet", NATIVE, {"200", "404"} | GATES),
    ("post", "/v1/batches"): ("submitBatch", BATCHES, {"202", "404", "413", "422"} | GATES | SUBMIT),
    ("get", "/v1/batches/{batch_id}"): ("getBatch", BATCHES, {"200", "404"} | GATES),
    ("delete", "/v1/batches/{batch_id}"): ("cancelBatch", BATCHES, {"200", "404"} | GATES),
    ("get", "/v1/batches/{batch_id}/results"): ("getBatchResults", BATCHES, {"200", "404"} | GATES),
    ("get", "/v1/batches/{batch_id}/matches"): ("getBatchMatches", BATCHES, {"200", "404", "422"} | GATES),
    ("get", "/v1/batches/{batch_id}/persons"): ("getBatchPersons", BATCHES, {"200", "404", "409"} | GATES),
    ("post", "/v1/collections"): ("createCollection", COLLECTIONS, {"201", "409", "413", "422"} | GATES),
    ("get", "/v1/collections"): ("listCollections", COLLECTIONS, {"200", "422"} | GATES),
    ("get", COLLECTION): ("getCollection", COLLECTIONS, {"200", "404"} | GATES),
    ("delete", COLLECTION): ("deleteCollection", COLLECTIONS, {"204", "404"} | GATES),
    ("get", f"{COLLECTION}/faces"): ("listCollectionFaces", COLLECTIONS, {"200", "404", "422"} | GATES),
    ("post", f"{COLLECTION}/faces"): ("indexFacesFromTask", COLLECTIONS, {"201", "404", "413", "422"} | GATES),
    ("delete", f"{COLLECTION}/faces/{{face_id}}"): ("deleteCollectionFace", COLLECTIONS, {"204", "404"} | GATES),
    ("post", f"{COLLECTION}/search"): ("searchCollectionByFace", COLLECTIONS, {"200", "404", "413", "422"} | GATES),
    ("get", f"{TASK}/deliveries"): ("listTaskDeliveries", WEBHOOKS, {"200", "404"} | GATES),
    ("post", f"{TASK}/redeliver"): ("redeliverLastEvent", WEBHOOKS, {"202", "404", "409"} | GATES),
    ("get", "/v1/deliveries"): ("listRecentDeliveries", WEBHOOKS, {"200", "422"} | GATES),
    ("get", ENDPOINT): ("getWebhookEndpoint", WEBHOOKS, {"200", "409"} | GATES),
    ("put", ENDPOINT): ("setWebhookEndpoint", WEBHOOKS, {"200", "409", "413", "422"} | GATES),
    ("delete", ENDPOINT): ("deleteWebhookEndpoint", WEBHOOKS, {"204", "409"} | GATES),
    ("get", f"{ENDPOINT}/secret"): ("getWebhookSecret", WEBHOOKS, {"200", "409"} | GATES),
    ("post", f"{ENDPOINT}/rotate-secret"): ("rotateWebhookSecret", WEBHOOKS, {"200", "409"} | GATES),
    # Akool's detect_faces answers its errors with HTTP 200 and error_code 1 (seed 000)
    ("post", f"{AKOOL_API}/detect_faces"): ("detectFaces", AKOOL, {"200"} | GATES | SUBMIT),
    ("post", f"{AKOOL_API}/faceswap/analyze_frames"): ("analyzeFrames", AKOOL, {"200", "400", "500"} | GATES | SUBMIT),
    # crun answers 413 as 422 (its list of codes has no 413), a failed task as 501 (seed 004)
    ("post", f"{CRUN_API}/detect-face-image"): ("createImageDetectTask", CRUN, {"200", "422"} | GATES | SUBMIT),
    ("post", f"{CRUN_API}/detect-face-video"): ("createVideoDetectTask", CRUN, {"200", "422"} | GATES | SUBMIT),
    ("get", f"{CRUN_API}/detect-face-result"): ("getDetectTaskResult", CRUN, {"200", "404", "422", "501"} | GATES),
    ("post", "/face/analyze"): ("analyzeFace", ACEDATA, {"200", "400", "500"} | GATES | SUBMIT),
}
# The error envelope of each API (Akool's two endpoints differ)
ERROR_MODELS = {
    NATIVE: "NativeError",
    BATCHES: "NativeError",
    COLLECTIONS: "NativeError",
    WEBHOOKS: "NativeError",
    CRUN: "CrunError",
    ACEDATA: "AceDataError",
}
ENDPOINT_ERROR_MODELS = {"detectFaces": "DetectFacesResponse", "analyzeFrames": "AnalyzeFramesErrorResponse"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app().openapi()


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method, path): operation for path, item in document["paths"].items() for method, operation in item.items()}


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for `schema`, with the document's components to resolve its $refs against."""
    return Draft202012Validator({**schema, "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_every_route_has_its_operation_id_tag_and_statuses(document) -> None:
    found = {
        key: (operation["operationId"], operation["tags"], set(operation["responses"]))
        for key, operation in operations(document).items()
    }
    assert found == {key: (op_id, [tag], statuses) for key, (op_id, tag, statuses) in ROUTES.items()}
    assert [tag["name"] for tag in document["tags"]] == [
        "native", "batches", "collections", "webhooks", "akool", "crun", "acedata", "health"
    ]  # fmt: skip


def test_pages_and_internal_routes_stay_out(document) -> None:
    hidden = ("/docs", "/redoc", "/console", "/metrics", "/v1/media", "/openapi.json")
    assert not [path for path in document["paths"] if path.startswith(hidden)]


def test_both_key_headers_are_security_schemes_on_every_route_but_health(document) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {name: {k: v for k, v in scheme.items() if k != "description"} for name, scheme in schemes.items()} == {
        "BearerAuth": {"type": "http", "scheme": "bearer"},
        "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    }
    for (method, path), operation in operations(document).items():
        expected = [] if path in ("/healthz", "/readyz") else [{"BearerAuth": []}, {"ApiKeyAuth": []}]
        assert operation.get("security", []) == expected, (method, path)
        # the key is a security scheme, never a parameter of its own
        assert not [p for p in operation.get("parameters", []) if p["name"].lower() in ("authorization", "x-api-key")]


def test_errors_are_declared_in_each_apis_own_shape_with_examples_that_fit(document) -> None:
    for (method, path), operation in operations(document).items():
        tag = operation["tags"][0]
        if tag == HEALTH:
            continue
        model = ENDPOINT_ERROR_MODELS.get(operation["operationId"]) or ERROR_MODELS[tag]
        for status, response in operation["responses"].items():
            # successes (but detect_faces' 200, its errors' status too), and crun's failed task (its result shape)
            if status == "501" or (int(status) < 400 and operation["operationId"] != "detectFaces"):
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": f"#/components/schemas/{model}"}, (method, path, status)
            check = validator(document, content["schema"])
            examples = content["examples"]
            assert examples, (method, path, status)
            for name, example in examples.items():
                assert not list(check.iter_errors(example["value"])), (method, path, status, name)
                if tag in (NATIVE, BATCHES, COLLECTIONS, WEBHOOKS):
                    assert set(example["value"]["error"]) == {"code", "message", "field"}
    retry = operations(document)[("post", "/v1/detect")]["responses"]
    assert retry["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert retry["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}


def test_compat_errors_are_rendered_as_each_seed_answers_them(document) -> None:
    ops = operations(document)
    detect_faces = ops[("post", f"{AKOOL_API}/detect_faces")]["responses"]
    in_200 = detect_faces["200"]["content"]["application/json"]["examples"]
    assert {example["value"]["error_msg"] for example in in_200.values()} >= {
        "Either 'url' or 'img' parameter must be provided",
        "Failed to download media from URL",
    }
    assert all(
        example["value"]["error_code"] == 1 and example["value"]["faces_obj"] == {} for example in in_200.values()
    )
    frames = ops[("post", f"{AKOOL_API}/faceswap/analyze_frames")]["responses"]
    assert {e["value"]["error"] for e in frames["500"]["content"]["application/json"]["examples"].values()} >= {
        "Failed to process frames"
    }
    assert {e["value"]["error"] for e in frames["400"]["content"]["application/json"]["examples"].values()} >= {
        "frame_urls is required and must not be empty",
        "Failed to download image from URL",
    }
    acedata = ops[("post", "/face/analyze")]["responses"]
    codes = {e["value"]["error"]["code"] for e in acedata["400"]["content"]["application/json"]["examples"].values()}
    assert codes == {"token_mismatched", "api_not_implemented"}
    fetch_failed = acedata["500"]["content"]["application/json"]["examples"]["task_failed"]["value"]
    assert fetch_failed["error"] == {"code": "api_error", "message": "fetch failed"}
    assert acedata["401"]["content"]["application/json"]["examples"]["unauthorized"]["value"]["error"] == {
        "code": "invalid_token",
        "message": MISSING_KEY,
    }
    crun_failed = ops[("get", f"{CRUN_API}/detect-face-result")]["responses"]["501"]["content"]["application/json"]
    assert crun_failed["schema"] == {"$ref": "#/components/schemas/CrunResultResponse"}
    assert crun_failed["example"]["data"]["result"] is None  # nulls survive FastAPI's exclude_none


def test_pictures_are_binary_jpegs(document) -> None:
    """What makes a generated client hand back bytes (tests/test_openapi_generated_client.py)."""
    ops = operations(document)
    for picture in ("preview.jpg", "contact.jpg"):
        assert ops[("get", f"{TASK}/{picture}")]["responses"]["200"]["content"] == {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}
        }


def test_the_title_names_generated_clients_apart_from_ours(document) -> None:
    # openapi-python-client names its package after the title: facequeue_http_api_client, not facequeue_client
    assert document["info"]["title"] == "facequeue HTTP API"


def _enums(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "enum" in node:
            yield node
        for key, value in node.items():
            if key not in ("example", "examples"):
                yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def test_enums_whose_values_are_not_names_name_their_members(document) -> None:
    """Generators name a member after its value when the value starts with a letter, and VALUE_0, VALUE_1
    otherwise (numbers, "6", "90"): those enums give x-enum-varnames, one identifier per value."""
    for enum in _enums(document):
        if all(isinstance(value, str) and value[:1].isalpha() for value in enum["enum"]):
            assert "x-enum-varnames" not in enum, enum
            continue
        names = enum.get("x-enum-varnames", [])
        assert len(names) == len(set(names)) == len(enum["enum"]), enum
        assert all(name.isidentifier() and name.isupper() for name in names), enum
    landmarks = document["components"]["schemas"]["DetectCreate"]["properties"]["landmarks"]
    assert dict(zip(landmarks["enum"], landmarks["x-enum-varnames"], strict=True)) == {
        "6": "POINTS_6",
        "90": "POINTS_90",
    }
    error_code = document["components"]["schemas"]["DetectFacesResponse"]["properties"]["error_code"]
    assert error_code["x-enum-varnames"] == ["SUCCESS", "ERROR"]


def test_fastapi_validation_error_shape_is_gone(document) -> None:
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text


def test_every_schema_has_an_example_that_fits_it(document) -> None:
    schemas = document["components"]["schemas"]
    assert [name for name, schema in schemas.items() if not schema.get("examples")] == []
    for name, schema in schemas.items():
        check = validator(document, schema)
        for example in schema["examples"]:
            assert not list(check.iter_errors(example)), name


def test_compat_schemas_keep_the_seeds_fields(document) -> None:
    schemas = document["components"]["schemas"]

    def fields(name: str) -> list[str]:
        return list(schemas[name]["properties"])

    # seed 000
    assert fields("DetectFacesRequest") == ["url", "img", "num_frames", "single_face", "return_face_url"]
    assert fields("DetectFacesResponse") == ["error_code", "error_msg", "faces_obj"]
    assert fields("FaceFrame") == list(FaceFrame.model_fields) == [
        "landmarks", "landmarks_str", "region", "removed", "frame_time", "face_urls", "crop_region", "crop_landmarks"
    ]  # fmt: skip
    # seed 003
    assert set(fields("AnalyzeFramesRequest")) == {"frame_urls", "timestamps", "expand_ratio"}
    assert fields("AnalyzeFramesResponse") == ["success", "frame_count", "persons"]
    assert fields("AnalyzeFramesErrorResponse") == ["success", "error"]
    assert fields("PersonView") == [
        "person_id", "index", "face_url", "bbox", "confidence", "appearances", "first_seen", "last_seen"
    ]  # fmt: skip
    # seed 002
    assert fields("FaceAnalyzeRequest") == ["image_url", "mode", "face_model_version", "need_rotate_detection"]
    assert fields("FaceAnalyzeResponse") == ["image_width", "image_height", "face_model_version", "face_shape_set"]
    assert fields("AceDataError") == ["success", "error", "trace_id"]
    assert fields("AceDataErrorDetail") == ["code", "message"]
    # seed 004
    assert fields("CrunCreateResponse") == fields("CrunResultResponse") == fields("CrunError") == [
        "code", "message", "data"
    ]  # fmt: skip
    assert fields("CrunResult") == ["id", "status", "type", "hair_id", "faces", "started_at", "finished_at", "error"]
    assert set(schemas["CrunTaskState"]["properties"]["status"]["enum"]) == {
        "starting", "processing", "succeeded", "failed"
    }  # fmt: skip


def test_batch_body_is_json_or_jsonl_and_results_are_jsonl(document) -> None:
    ops = operations(document)
    body = ops[("post", "/v1/batches")]["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchCreate"}
    manifest = body["content"]["application/x-ndjson"]
    assert (manifest["schema"]["type"], manifest["schema"]["format"]) == ("string", "binary")
    item = validator(document, document["components"]["schemas"]["BatchCreate"]["properties"]["items"]["items"])
    lines = manifest["example"].splitlines()
    assert len(lines) == 3 and all(not list(item.iter_errors(json.loads(line))) for line in lines)

    results = ops[("get", "/v1/batches/{batch_id}/results")]["responses"]["200"]["content"]
    assert list(results) == ["application/x-ndjson"]
    assert (results["application/x-ndjson"]["schema"]["type"], results["application/x-ndjson"]["schema"]["format"]) == (
        "string",
        "binary",
    )
    line = validator(document, {"$ref": "#/components/schemas/BatchResultLine"})
    result_lines = results["application/x-ndjson"]["example"].splitlines()
    assert len(result_lines) == 2 and all(not list(line.iter_errors(json.loads(text))) for text in result_lines)


@pytest.mark.integration
def test_declaring_the_schemes_leaves_authentication_as_it_was(clean_state) -> None:
    """One 401 in each API's shape, x-api-key alone works, a non-Bearer Authorization falls back to x-api-key."""
    key = new_key("openapi-schemes")
    with make_client() as client:
        missing = client.post("/v1/detect", json={"url": "https://example.com/a.jpg"})
        assert missing.status_code == 401
        assert missing.json() == {"error": {"code": "unauthorized", "message": MISSING_KEY, "field": None}}
        assert client.get("/v1/detect", headers={"x-api-key": key}).status_code == 200
        basic = client.get("/v1/detect", headers={"Authorization": "Basic dXNlcjpwYXNz", "x-api-key": key})
        assert basic.status_code == 200
        crun = client.get(f"{CRUN_API}/detect-face-result", params={"detect_task_id": "x"})
        assert crun.status_code == 401 and crun.json() == {"code": 401, "message": MISSING_KEY, "data": None}
