"""Tenants and API keys on every API: 401 shapes, Bearer precedence, isolation, credits, rate limits,
maintenance and feature flags. Real Postgres and Redis (the rate limiter's storage)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from api.auth import AUTHORIZATION_NOT_BEARER
from db import tenants
from db.models import Tenant
from facequeue.core.settings import Settings, get_settings
from facequeue.plumbing.sessions import session_scope
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

URL = "https://example.com/a.jpg"


def make_client(**overrides) -> TestClient:
    from api.app import create_app

    return TestClient(create_app(Settings(auth="on", **overrides)))


@pytest.fixture
def auth_client(clean_state):
    with make_client() as client:
        yield client


def new_key(name: str, credits: int | None = None, rate: str | None = None) -> str:
    with session_scope() as session:
        tenant = tenants.get_or_create_tenant(session, name)
        tenant.credits = credits
        _, key = tenants.create_key(session, tenant, rate)
    return key


def balance(name: str) -> int | None:
    with session_scope() as session:
        return session.query(Tenant).filter_by(name=name).one().credits


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# (method, path, body) of a submit on each API, and how each API shapes an error
SUBMITS = {
    "native": ("/v1/detect", {"url": URL}),
    "akool": ("/interface/detect-api/detect_faces", {"url": URL}),
    "analyze_frames": ("/interface/detect-api/faceswap/analyze_frames", {"frame_urls": [URL]}),
    "crun": ("/api/v1/client/job/detect-face-image", {"image_url": URL}),
    "acedata": ("/face/analyze", {"image_url": URL}),
}


def error_message(api: str, body: dict) -> str:
    """The message, checking the API's own error shape on the way."""
    if api == "native":
        assert set(body) == {"error"}
        return body["error"]["message"]
    if api == "akool":
        assert body["error_code"] == 1 and body["faces_obj"] == {}
        return body["error_msg"]
    if api == "analyze_frames":
        assert body["success"] is False
        return body["error"]
    if api == "crun":
        assert body["data"] is None
        return body["message"]
    assert body["success"] is False and set(body) == {"success", "error", "trace_id"}
    return body["error"]["message"]


@pytest.mark.parametrize("api", SUBMITS)
def test_missing_or_bad_key_is_401_in_each_shape(auth_client, api: str) -> None:
    path, body = SUBMITS[api]
    missing = auth_client.post(path, json=body)
    assert missing.status_code == 401
    assert error_message(api, missing.json()).startswith("Missing API key")
    bad = auth_client.post(path, json=body, headers={"x-api-key": "fq_not-a-key"})
    assert bad.status_code == 401 and error_message(api, bad.json()) == "Invalid API key"
    if api == "crun":
        assert missing.json()["code"] == 401
    if api == "acedata":
        assert missing.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("api", ["native", "crun"])
@pytest.mark.parametrize("authorization", ["{key}", "Token {key}", "Bearer "])
def test_a_key_without_bearer_is_told_how_to_send_it_in_each_shape(auth_client, api: str, authorization: str) -> None:
    key = new_key(f"no-bearer-{api}")
    path, body = SUBMITS[api]
    refused = auth_client.post(path, json=body, headers={"Authorization": authorization.format(key=key)})
    assert refused.status_code == 401
    assert error_message(api, refused.json()) == AUTHORIZATION_NOT_BEARER
    assert key not in refused.text
    if api == "crun":
        assert refused.json()["code"] == 401


def test_bearer_wins_over_x_api_key(auth_client) -> None:
    key = new_key("acme")
    ok = auth_client.post("/v1/detect", json={"url": URL}, headers={**bearer(key), "x-api-key": "fq_wrong"})
    assert ok.status_code == 202
    refused = auth_client.post("/v1/detect", json={"url": URL}, headers={**bearer("fq_wrong"), "x-api-key": key})
    assert refused.status_code == 401


def test_tenants_never_see_each_other(auth_client) -> None:
    alice, bob = new_key("alice"), new_key("bob")
    task_id = auth_client.post("/v1/detect", json={"url": URL}, headers=bearer(alice)).json()["detect_task_id"]
    crun_id = auth_client.post(SUBMITS["crun"][0], json={"image_url": URL}, headers=bearer(alice)).json()["data"][
        "detect_task_id"
    ]
    assert auth_client.get(f"/v1/detect/{task_id}", headers=bearer(alice)).status_code == 200
    assert auth_client.get(f"/v1/detect/{task_id}", headers=bearer(bob)).status_code == 404
    assert auth_client.delete(f"/v1/detect/{task_id}", headers=bearer(bob)).status_code == 404
    assert auth_client.get(f"/v1/detect/{task_id}/deliveries", headers=bearer(bob)).status_code == 404
    assert auth_client.post(f"/v1/detect/{task_id}/redeliver", headers=bearer(bob)).status_code == 404
    assert auth_client.get(f"/v1/detect/{task_id}/deliveries", headers=bearer(alice)).status_code == 200
    assert auth_client.get("/v1/detect", headers=bearer(bob)).json()["items"] == []
    assert len(auth_client.get("/v1/detect", headers=bearer(alice)).json()["items"]) == 2
    result = auth_client.get(
        "/api/v1/client/job/detect-face-result", params={"detect_task_id": crun_id}, headers=bearer(bob)
    )
    assert result.status_code == 404 and result.json()["code"] == 404
    assert auth_client.get(f"/v1/detect/{task_id}", headers=bearer(alice)).json()["status"] == "queued"


@pytest.mark.parametrize("api", SUBMITS)
def test_insufficient_credits_is_402_in_each_shape(auth_client, api: str) -> None:
    key = new_key(f"poor-{api}", credits=0)
    path, body = SUBMITS[api]
    response = auth_client.post(path, json=body, headers=bearer(key))
    assert response.status_code == 402
    assert error_message(api, response.json()).startswith("Insufficient Credits")
    assert balance(f"poor-{api}") == 0


def test_credits_are_reserved_and_refunded_on_cancel(auth_client) -> None:
    key = new_key("acct", credits=10)
    image = auth_client.post("/v1/detect", json={"url": URL}, headers=bearer(key)).json()["detect_task_id"]
    assert balance("acct") == 9
    video = auth_client.post("/v1/detect", json={"url": "https://e.com/v.mp4", "num_frames": 6}, headers=bearer(key))
    assert balance("acct") == 3
    too_much = auth_client.post("/v1/detect", json={"url": "https://e.com/w.mp4", "num_frames": 4}, headers=bearer(key))
    assert too_much.status_code == 402 and balance("acct") == 3
    auth_client.delete(f"/v1/detect/{video.json()['detect_task_id']}", headers=bearer(key))
    assert balance("acct") == 9
    auth_client.delete(f"/v1/detect/{image}", headers=bearer(key))
    auth_client.delete(f"/v1/detect/{image}", headers=bearer(key))  # a second delete purges, never refunds twice
    assert balance("acct") == 10


def test_concurrent_submits_never_overdraw(auth_client) -> None:
    key = new_key("race", credits=5, rate="1000/second")  # the burst must meet the balance, not the rate limit

    def submit(i: int) -> int:
        return auth_client.post("/v1/detect", json={"url": f"https://e.com/{i}.jpg"}, headers=bearer(key)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(submit, range(24)))
    assert statuses.count(202) == 5 and statuses.count(402) == 19
    assert balance("race") == 0


def test_credits_settle_on_finish(auth_client, worker, media_server) -> None:
    import cv2

    from facequeue.cli.demo import astronaut_bgr
    from tests.support import wait_for_final

    key = new_key("settle", credits=20)
    photo = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
    media_server.expect_request("/photo").respond_with_data(photo, content_type="image/jpeg")
    media_server.expect_request("/gone.jpg").respond_with_data("no", status=404)
    client = TestClient(auth_client.app, headers=bearer(key))
    # no extension: it could be a video, so 5 frames are reserved; it is an image, so 1 is charged
    unknown = client.post("/v1/detect", json={"url": media_server.url_for("/photo"), "num_frames": 5})
    failing = client.post("/v1/detect", json={"url": media_server.url_for("/gone.jpg")})
    assert balance("settle") == 20 - 5 - 1
    assert wait_for_final(client, unknown.json()["detect_task_id"])["status"] == "succeeded"
    assert wait_for_final(client, failing.json()["detect_task_id"])["status"] == "failed"
    assert balance("settle") == 19


def test_rate_limit_answers_429_with_retry_after(auth_client) -> None:
    key = new_key("busy", rate="3/minute")
    for _ in range(3):
        assert auth_client.get("/v1/detect", headers=bearer(key)).status_code == 200
    limited = auth_client.get("/v1/detect", headers=bearer(key))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"]["code"] == "rate_limited"
    crun = auth_client.post(SUBMITS["crun"][0], json={"image_url": URL}, headers=bearer(key))
    assert crun.status_code == 429 and crun.json()["code"] == 429 and "Retry-After" in crun.headers
    acedata = auth_client.post("/face/analyze", json={"image_url": URL}, headers=bearer(key))
    assert acedata.status_code == 429 and acedata.json()["error"]["code"] == "too_many_requests"
    other = new_key("calm", rate="3/minute")  # limits are per key
    assert auth_client.get("/v1/detect", headers=bearer(other)).status_code == 200


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facequeue", *args],
        cwd=REPO_ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("api", SUBMITS)
def test_maintenance_refuses_new_work_but_polling_works(auth_client, api: str) -> None:
    key = new_key("ops")
    task_id = auth_client.post("/v1/detect", json={"url": URL}, headers=bearer(key)).json()["detect_task_id"]
    assert _cli("maintenance", "on").returncode == 0
    try:
        path, body = SUBMITS[api]
        response = _after_flag_cache(lambda: auth_client.post(path, json=body, headers=bearer(key)))
        assert response.status_code == 455
        assert error_message(api, response.json()).startswith("Service is under maintenance")
        assert auth_client.get(f"/v1/detect/{task_id}", headers=bearer(key)).status_code == 200
    finally:
        assert _cli("maintenance", "off").returncode == 0
    response = _after_flag_cache(lambda: auth_client.post("/v1/detect", json={"url": URL}, headers=bearer(key)))
    assert response.status_code == 202


def _after_flag_cache(call):
    """The API trusts its read of the flag for FACEQUEUE_FLAG_CACHE_SECONDS; a flip shows after that."""
    time.sleep(get_settings().flag_cache_seconds)
    return call()


@pytest.mark.parametrize(
    ("api", "path", "body", "feature"),
    [
        ("native", "/v1/detect", {"url": URL, "landmarks": "90"}, "landmarks90"),
        ("acedata", "/face/analyze", {"image_url": URL}, "landmarks90"),
        ("analyze_frames", SUBMITS["analyze_frames"][0], {"frame_urls": [URL]}, "persons"),
        ("crun", SUBMITS["crun"][0], {"image_url": URL}, "persons"),
        ("akool", SUBMITS["akool"][0], {"url": URL, "return_face_url": True}, "crops"),
    ],
)
def test_disabled_features_are_505(clean_state, api: str, path: str, body: dict, feature: str) -> None:
    key = new_key("flags")
    with make_client(disabled_features=[feature]) as client:
        response = client.post(path, json=body, headers=bearer(key))
    assert response.status_code == 505
    assert error_message(api, response.json()) == f"Feature '{feature}' is disabled"


def test_keys_cli_create_list_revoke(auth_client) -> None:
    created = _cli("keys", "create", "--tenant", "cli-tenant", "--credits", "7", "--rate", "5/second")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("fq_") and len(key) >= 40
    assert auth_client.get("/v1/detect", headers=bearer(key)).status_code == 200
    listing = _cli("keys", "list")
    assert key[:10] in listing.stdout and "cli-tenant" in listing.stdout and key not in listing.stdout
    assert balance("cli-tenant") == 7
    assert _cli("keys", "revoke", key[:10]).returncode == 0
    assert auth_client.get("/v1/detect", headers=bearer(key)).status_code == 401
    assert _cli("keys", "create", "--tenant", "x", "--rate", "lots").returncode != 0


def test_only_a_hash_of_the_key_is_stored(auth_client) -> None:
    from sqlalchemy import text

    from facequeue.plumbing.sessions import get_engine

    key = new_key("hashed")
    with get_engine().connect() as connection:
        stored = connection.execute(text("SELECT prefix, key_hash FROM api_keys")).all()
    assert all(key not in (prefix, key_hash) for prefix, key_hash in stored)
    assert any(key_hash == tenants.hash_key(key) for _, key_hash in stored)
