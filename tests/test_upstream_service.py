"""Upstream detection through the whole service: a real worker calling a fake Akool API on 127.0.0.1."""

from __future__ import annotations

import base64

import cv2
import pytest

from facequeue.cli.demo import astronaut_bgr
from tests.support import free_port, wait_for_final
from tests.upstream.fake_upstreams import AKOOL_PATH, API_KEY, AkoolDetect

pytestmark = pytest.mark.integration


def _submit(api_client, detector: str) -> dict:
    img = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()
    task_id = api_client.post("/v1/detect", json={"img": img, "detector": detector}).json()["detect_task_id"]
    return wait_for_final(api_client, task_id)


def test_upstream_serves_and_auto_falls_back(api_client, start_worker, media_server) -> None:
    media_server.expect_request(AKOOL_PATH, method="POST").respond_with_handler(AkoolDetect())
    healthy = start_worker(FACEQUEUE_UPSTREAM_URL=media_server.url_for(""), FACEQUEUE_UPSTREAM_API_KEY=API_KEY)
    task = _submit(api_client, "upstream")
    assert task["status"] == "succeeded", task["error"]
    assert task["detector"] == "upstream:akool" and task["result"]["detector"]["upstream_frames"] == 1
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 1
    assert _submit(api_client, "local")["detector"] == "yunet"
    healthy.stop()

    start_worker(FACEQUEUE_UPSTREAM_URL=f"http://127.0.0.1:{free_port()}", FACEQUEUE_UPSTREAM_MAX_ATTEMPTS="1")
    fallback = _submit(api_client, "auto")
    assert fallback["status"] == "succeeded"
    assert fallback["detector"].startswith("yunet (upstream")
    assert len(fallback["result"]["faces_obj"]["0"]["region"]) == 1
    failed = _submit(api_client, "upstream")
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_failed"
    assert failed["error"]["message"].startswith("Upstream face API failed: upstream akool")


def test_upstream_cannot_make_90_points(api_client) -> None:
    response = api_client.post(
        "/v1/detect", json={"url": "https://e.com/a.jpg", "detector": "upstream", "landmarks": "90"}
    )
    assert response.status_code == 422 and response.json()["error"]["field"] == "detector"
