"""A client generated from the live /openapi.json by a standard generator (issue 15, section 3 item 8):
openapi-python-client writes it without a warning, under a name apart from our facequeue_client, and the
generated code submits, polls, reads faces, downloads the preview JPEG and round-trips a JSONL batch against
a real API process and a real worker."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import cv2
import httpx
import pytest

from facequeue.cli.demo import astronaut_bgr
from tests.support import REPO_ROOT, api_process, wait_until
from tests.test_tenants import new_key

pytestmark = pytest.mark.integration

GENERATOR_CONFIG = REPO_ROOT / "clients" / "openapi-python-client.yaml"
PACKAGE = "facequeue_http_api_client"  # from the document's title
JPEG_MAGIC = b"\xff\xd8\xff"
# a task on a loaded 2-core machine (3 xdist processes beside it) takes seconds; the deadline is for a hang
TASK_DEADLINE = 120
REQUEST_TIMEOUT = httpx.Timeout(30)


@pytest.fixture
def live_api(clean_state: None, tmp_path: Path) -> Iterator[str]:
    """`uvicorn api.app:create_app` in a process of its own, API keys on."""
    with api_process(tmp_path / "api.log", FACEQUEUE_AUTH="on") as (base, _process):
        yield base


@pytest.fixture
def generated_client(live_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """openapi-python-client's client for the live document, importable as PACKAGE for this test only."""
    document = tmp_path / "openapi.json"
    document.write_bytes(httpx.get(f"{live_api}/openapi.json", timeout=REQUEST_TIMEOUT).raise_for_status().content)
    target = tmp_path / "generated"
    tools = Path(sys.executable).parent  # the generator and the ruff it formats its output with
    generated = subprocess.run(
        [
            tools / "openapi-python-client",
            "generate",
            "--path",
            document,
            "--output-path",
            target,
            "--config",
            GENERATOR_CONFIG,
            "--fail-on-warning",  # any warning (a body it cannot read, a hook it cannot run) exits non-zero
        ],
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', os.defpath)}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert len(output.strip().splitlines()) == 1, output  # its progress line, and not one warning
    assert (target / PACKAGE / "__init__.py").is_file()
    monkeypatch.syspath_prepend(str(target))
    yield target
    for name in [name for name in sys.modules if name.partition(".")[0] == PACKAGE]:
        del sys.modules[name]


def _astronaut_jpeg_base64() -> str:
    return base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()


def test_a_generated_client_detects_downloads_the_preview_and_runs_a_jsonl_batch(
    generated_client, live_api, worker
) -> None:
    from facequeue_http_api_client import AuthenticatedClient
    from facequeue_http_api_client.api.batches import get_batch, get_batch_results, submit_batch
    from facequeue_http_api_client.api.native import get_detect_task, get_frame_preview, submit_detect_task
    from facequeue_http_api_client.models import (
        BatchAccepted,
        BatchView,
        DetectAccepted,
        DetectRequest,
        DetectRequestLandmarks,
        DetectTaskView,
        TaskStatus,
    )
    from facequeue_http_api_client.types import File

    photo = _astronaut_jpeg_base64()
    key = new_key("generated-client")
    with AuthenticatedClient(live_api, token=key, timeout=REQUEST_TIMEOUT, raise_on_unexpected_status=True) as client:
        accepted = submit_detect_task.sync(
            client=client, body=DetectRequest(img=photo, landmarks=DetectRequestLandmarks.POINTS_90)
        )
        assert isinstance(accepted, DetectAccepted), accepted
        assert accepted.status == TaskStatus.QUEUED
        task = wait_until(
            lambda: get_detect_task.sync(accepted.detect_task_id, client=client),
            until=lambda task: task.status in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED),
            timeout=TASK_DEADLINE,
            what=f"task {accepted.detect_task_id} final, read by the generated client",
            interval=0.2,
        )
        assert isinstance(task, DetectTaskView) and task.status == TaskStatus.SUCCEEDED, task.error
        frame = task.result.faces_obj["0"]
        assert len(frame.region) == len(frame.landmarks) == 1  # the astronaut's one face
        assert len(frame.region[0]) == 4 and len(frame.landmarks[0]) == 6
        assert len(task.result.face_shape_set["0"]) == 1  # landmarks POINTS_90 asked for the 90-point shapes

        preview = get_frame_preview.sync(task.detect_task_id, client=client)
        assert isinstance(preview, File)
        jpeg = preview.payload.read()
        assert jpeg[:3] == JPEG_MAGIC
        assert jpeg == client.get_httpx_client().get(f"/v1/detect/{task.detect_task_id}/preview.jpg").content

        # a JSONL manifest goes up as a File (Content-Type: application/x-ndjson), the results come back as one
        manifest = (json.dumps({"img": photo}) + "\n").encode()
        batch_accepted = submit_batch.sync(client=client, body=File(payload=BytesIO(manifest)))
        assert isinstance(batch_accepted, BatchAccepted), batch_accepted
        assert batch_accepted.total == 1
        batch = wait_until(
            lambda: get_batch.sync(batch_accepted.batch_id, client=client),
            until=lambda batch: batch.status != "running",
            timeout=TASK_DEADLINE,
            what=f"batch {batch_accepted.batch_id} done, read by the generated client",
            interval=0.2,
        )
        assert isinstance(batch, BatchView) and batch.status == "completed", batch
        results = get_batch_results.sync(batch_accepted.batch_id, client=client)
        assert isinstance(results, File)
        lines = [json.loads(line) for line in results.payload.read().splitlines()]
        assert [(line["position"], line["status"], line["error"]) for line in lines] == [(0, "succeeded", None)]
        assert len(lines[0]["result"]["faces_obj"]["0"]["region"]) == 1
