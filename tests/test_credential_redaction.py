"""No part of a caller's API key reaches the log (facequeue/core/logs.py), and the request that once logged one in a
500's traceback (crun's result of the caller's own deleted task) answers crun's not-found."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from fastapi.testclient import TestClient

from facequeue.core.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support import wait_for_final
from tests.test_tenants import new_key
from tests.webhooks.test_delivery import PNG

pytestmark = pytest.mark.integration

CRUN = "/api/v1/client/job"

# A real app, its real logging, a keyed request whose route fails with an exception no service expected; the
# key is in the failing frames' locals (the Authorization credentials), in the exception message and in a
# field of a line of our own.
FORCED_500 = """
import sys
import structlog
from fastapi.testclient import TestClient
from api.app import create_app
from api.services.detect import DetectService
from facequeue.core.logs import configure_logging
from facequeue.core.settings import Settings

key, log_format = sys.argv[1], sys.argv[2]
settings = Settings(auth="on", log_format=log_format, log_level="INFO")
configure_logging(settings)

def broken(self, task_id, tenant_id):
    raise RuntimeError(f"forced failure for {key}")

DetectService.get_undeleted = broken
client = TestClient(create_app(settings), raise_server_exceptions=False)
response = client.get("/api/v1/client/job/detect-face-result", params={"detect_task_id": "x"},
                      headers={"Authorization": f"Bearer {key}"})
structlog.get_logger("test").info("caller_seen", headers={"authorization": f"Bearer {key}"}, key=key)
print(response.status_code, response.text)
"""


def key_parts(key: str) -> list[str]:
    """Every 6-character piece of the key's secret part (what follows fq_)."""
    secret = key.removeprefix("fq_")
    return [secret[start : start + 6] for start in range(len(secret) - 5)]


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_forced_500_logs_its_traceback_without_any_part_of_the_key(database: str, log_format: str) -> None:
    key = new_key(f"redaction-{uuid.uuid4().hex[:8]}")
    run = subprocess.run(
        [sys.executable, "-c", FORCED_500, key, log_format],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == '500 {"code":500,"message":"Internal server error","data":null}'
    log = run.stderr
    # the traceback and our line were written, with the key's place marked
    assert "RuntimeError" in log and "forced failure for [redacted]" in log and "caller_seen" in log
    assert log.count("[redacted]") >= 3
    assert [part for part in key_parts(key) if part in log] == []


def test_crun_answers_not_found_for_the_caller_s_own_deleted_task(database: str, worker, media_server) -> None:
    from api.app import create_app

    media_server.expect_request("/gray.png").respond_with_data(PNG, content_type="image/png")
    key = new_key(f"crun-deleted-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(Settings(auth="on")), headers={"Authorization": f"Bearer {key}"}) as client:
        created = client.post(f"{CRUN}/detect-face-image", json={"image_url": media_server.url_for("/gray.png")})
        task_id = created.json()["data"]["detect_task_id"]
        assert wait_for_final(client, task_id)["status"] == "succeeded"
        assert client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": task_id}).status_code == 200
        assert client.delete(f"/v1/detect/{task_id}").status_code == 200
        deleted = client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": task_id})
        missing = client.get(f"{CRUN}/detect-face-result", params={"detect_task_id": "no-such-task"})
    assert deleted.status_code == 404 == missing.status_code
    assert deleted.json() == {"code": 404, "message": f"detect task {task_id} not found", "data": None}
    assert missing.json() == {"code": 404, "message": "detect task no-such-task not found", "data": None}
