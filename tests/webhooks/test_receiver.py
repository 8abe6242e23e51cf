"""The README's webhook receiver, run as written: its code block is taken from README.md and served by uvicorn in
a process of its own, and it answers 2xx to real deliveries of every event type we send. It imports the light
client, never the server; and the server's own `verify` accepts and refuses exactly what the client's does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from facequeue_client import verify_webhook
from standardwebhooks import Webhook, WebhookVerificationError
from werkzeug import Response

from facequeue.core.webhooks import encode_event, signature_headers, verify
from tests.conftest import REPO_ROOT
from tests.support import start_server, wait_for_final
from tests.test_tenants import new_key
from tests.webhooks.conftest import new_secret
from tests.webhooks.test_endpoint_api import delivered, served_png, tenant_client

pytestmark = pytest.mark.integration

SERVER_MODULES = ("facequeue", "cv2", "celery", "sqlalchemy", "boto3", "numpy")


def readme_receiver() -> str:
    """The README's python block that starts with `# receiver.py`."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.DOTALL)
    [code] = [block for block in blocks if block.startswith("# receiver.py")]
    return code


class ReceiverProcess:
    """`uvicorn receiver:app` on a free port, in its own process group, its output in a file."""

    def __init__(self, folder: Path, secret: str) -> None:
        (folder / "receiver.py").write_text(readme_receiver())
        self.log_path = folder / "receiver.log"
        self.base, self.process = start_server(
            lambda port: [sys.executable, "-m", "uvicorn", "receiver:app", "--host", "127.0.0.1", "--port", str(port)],
            self.log_path,
            {**os.environ, "WEBHOOK_SECRET": secret, "PYTHONUNBUFFERED": "1"},
            ready_path=None,
            cwd=folder,
            new_session=True,
        )

    @property
    def url(self) -> str:
        return f"{self.base}/facequeue"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)


@pytest.fixture
def tenant_api(database: str):
    with tenant_client(new_key(f"receiver-{uuid.uuid4().hex[:10]}")) as client:
        yield client


@pytest.fixture
def readme_app(tenant_api, tmp_path: Path) -> Iterator[ReceiverProcess]:
    secret = tenant_api.get("/v1/webhook-endpoint/secret").json()["secret"]
    app = ReceiverProcess(tmp_path, secret)
    try:
        yield app
    finally:
        app.stop()


def test_the_readme_receiver_takes_every_event_type(tenant_api, readme_app, webhook_worker, media_server) -> None:
    assert tenant_api.put("/v1/webhook-endpoint", json={"url": readme_app.url}).status_code == 200
    image = served_png(media_server)
    media_server.expect_request("/missing.png").respond_with_data("no", status=404)
    missing = media_server.url_for("/missing.png")
    release = threading.Event()
    media_server.expect_request("/slow.png").respond_with_handler(lambda _request: release.wait(10) and Response())

    succeeded = tenant_api.post("/v1/detect", json={"url": image}).json()["detect_task_id"]
    failed = tenant_api.post("/v1/detect", json={"url": missing}).json()["detect_task_id"]
    canceled = tenant_api.post("/v1/detect", json={"url": media_server.url_for("/slow.png")}).json()["detect_task_id"]
    try:
        assert tenant_api.post(f"/v1/detect/{canceled}/cancel").json()["status"] == "canceled"
    finally:
        release.set()
    batch_id = tenant_api.post("/v1/batches", json={"items": [{"url": image}, {"url": missing}]}).json()["batch_id"]

    items = delivered(tenant_api, 4, timeout=60)
    assert sorted((item["event_type"], item["status_code"], item["event_state"]) for item in items) == [
        ("batch.completed", 200, "succeeded"),
        ("detect_task.canceled", 200, "succeeded"),
        ("detect_task.failed", 200, "succeeded"),
        ("detect_task.succeeded", 200, "succeeded"),
    ]
    error = wait_for_final(tenant_api, failed)["error"]
    counts = {"queued": 0, "processing": 0, "succeeded": 1, "failed": 1, "canceled": 0}
    printed = set(readme_app.log().splitlines())
    assert {
        f"detect_task.succeeded {succeeded} None",
        f"detect_task.failed {failed} {error}",
        f"detect_task.canceled {canceled} None",
        f"batch.completed {batch_id} {counts}",
    } <= printed

    # a redelivery is a duplicate the receiver acknowledges without handling it twice
    assert tenant_api.post(f"/v1/detect/{succeeded}/redeliver").status_code == 202
    retried = delivered(tenant_api, 2, detect_task_id=succeeded)
    assert [(item["attempt"], item["status_code"]) for item in retried] == [(2, 200), (1, 200)]
    assert readme_app.log().count(f"detect_task.succeeded {succeeded} ") == 1


def test_the_readme_receiver_refuses_what_its_secret_did_not_sign(readme_app) -> None:
    body = encode_event({"type": "batch.completed", "timestamp": "2026-11-21T20:31:02Z", "data": {"batch_id": "b"}})
    forged = signature_headers("msg_forged", datetime.now(UTC), body, [new_secret()])
    answer = httpx.post(readme_app.url, content=body, headers=forged, timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"detail": "bad signature"})
    unsigned = httpx.post(readme_app.url, content=body, timeout=10)
    assert unsigned.status_code == 400
    assert "batch.completed" not in readme_app.log()


def test_the_readme_receiver_loads_no_server_module(tmp_path: Path) -> None:
    (tmp_path / "receiver.py").write_text(readme_receiver())
    probe = f"import sys, receiver; print(sorted(set({SERVER_MODULES!r}) & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "WEBHOOK_SECRET": new_secret()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (loaded.returncode, loaded.stdout.strip()) == (0, "[]"), loaded.stderr


SECRET, OTHER = new_secret(), new_secret()
EVENT = {"type": "detect_task.failed", "timestamp": "2026-11-21T20:31:02.114Z", "data": {"detect_task_id": "t1"}}


def signed(secrets: list[str], sent_at: datetime | None = None, body: str | None = None) -> tuple[str, dict]:
    body = encode_event(EVENT) if body is None else body
    headers = signature_headers("msg_1", sent_at or datetime.now(UTC), body, secrets)
    return body, {name.title(): value for name, value in headers.items()}


def _tampered_body() -> tuple[str, dict]:
    body, headers = signed([SECRET])
    return body.replace("failed", "succeeded"), headers


def _malformed_signature() -> tuple[str, dict]:
    body, headers = signed([SECRET])
    return body, {**headers, "Webhook-Signature": "v1,garbage"}


def _missing_headers() -> tuple[str, dict]:
    return signed([SECRET])[0], {"Webhook-Id": "msg_1"}


def _not_json() -> tuple[str, dict]:
    sent_at = datetime.now(UTC)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(sent_at.timestamp()))}
    return "not json", {**headers, "webhook-signature": Webhook(SECRET).sign("msg_1", sent_at, "not json")}


@pytest.mark.parametrize(
    ("case", "secret", "accepted"),
    [
        (lambda: signed([SECRET]), SECRET, True),
        (lambda: signed([SECRET, OTHER]), OTHER, True),  # during a rotation either secret verifies
        (lambda: signed([OTHER]), SECRET, False),
        (_tampered_body, SECRET, False),
        (_malformed_signature, SECRET, False),
        (_missing_headers, SECRET, False),
        (lambda: signed([SECRET], sent_at=datetime.now(UTC) - timedelta(minutes=6)), SECRET, False),
        (lambda: signed([SECRET], sent_at=datetime.now(UTC) + timedelta(minutes=6)), SECRET, False),
        (_not_json, SECRET, False),
    ],
    # the secrets are random: stable ids keep collection identical across processes (pytest-xdist)
    ids=[
        "signed",
        "rotation",
        "other-secret",
        "tampered",
        "malformed",
        "no-headers",
        "too-old",
        "too-new",
        "not-json",
    ],
)
def test_the_server_verify_agrees_with_the_client(case, secret: str, accepted: bool) -> None:
    body, headers = case()
    outcomes = []
    for check in (verify, verify_webhook):
        try:
            event = check(body.encode(), headers, secret)
        except WebhookVerificationError as error:
            outcomes.append(("refused", str(error)))
        else:
            event = event if isinstance(event, dict) else event.model_dump(include={"type", "data"})
            outcomes.append(("accepted", event["type"], event["data"]))
    server, client = outcomes
    assert server == client and (server[0] == "accepted") == accepted
