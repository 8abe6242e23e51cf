"""A NUL character in a path or a query parameter, which Postgres text can't hold: fuzzing found it reaching the
database as a 500 (psycopg's DataError) on crun's detect-face-result. Now each API answers in its own shape:
404 for a path (no id has one), 422 for a query parameter the route takes. Real Postgres and Redis."""

from __future__ import annotations

import pytest

from tests.test_tenants import make_client, new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def keyed(clean_state):
    key = new_key("nul-probe")
    with make_client() as client:
        client.headers["x-api-key"] = key
        yield client


def test_a_nul_in_a_path_names_nothing(keyed) -> None:
    for path in ("/v1/detect/%00", "/v1/detect/ab%00cd/deliveries", "/v1/batches/bt_%00"):
        answer = keyed.get(path)
        assert (answer.status_code, answer.json()) == (
            404,
            {"error": {"code": "not_found", "message": "No resource has a NUL character in its path", "field": None}},
        )


def test_a_nul_in_a_query_parameter_is_invalid_in_each_apis_shape(keyed) -> None:
    native = keyed.get("/v1/deliveries", params={"detect_task_id": "a\x00b"})
    assert (native.status_code, native.json()) == (
        422,
        {
            "error": {
                "code": "validation_error",
                "message": "detect_task_id: must not contain a NUL character",
                "field": "detect_task_id",
            }
        },
    )
    assert keyed.get("/v1/detect", params={"cursor": "\x00"}).json()["error"]["field"] == "cursor"
    crun = keyed.get("/api/v1/client/job/detect-face-result", params={"detect_task_id": "\x00"})
    assert (crun.status_code, crun.json()) == (
        422,
        {"code": 422, "message": "detect_task_id: must not contain a NUL character", "data": None},
    )


def test_a_nul_in_a_parameter_the_route_does_not_take_is_ignored(keyed) -> None:
    answer = keyed.get("/v1/detect/no-such-task", params={"unknown": "\x00"})
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "detect task no-such-task not found"


def test_without_a_key_the_answer_is_still_401(clean_state) -> None:
    with make_client() as client:
        assert client.get("/v1/detect/%00").status_code == 401
