"""The client against the embedded form: `facequeue serve` (its own Postgres, Redis and worker)."""

from __future__ import annotations

import pytest
from facequeue_client import AsyncClient, Client


def test_detect_wait_and_list(embedded_server, face_jpeg: bytes) -> None:
    server, _, key, _ = embedded_server
    with Client(server, key) as client:
        done = client.wait(client.detect(face_jpeg), timeout=120)
        assert done.status == "succeeded" and len(done.result.faces_obj["0"].region) == 1
        assert next(client.list(page_size=1)).detect_task_id == done.detect_task_id


@pytest.mark.anyio
async def test_async_detect_wait_and_list(embedded_server, face_jpeg: bytes) -> None:
    server, _, key, _ = embedded_server
    async with AsyncClient(server, key) as client:
        done = await client.wait(await client.detect(face_jpeg, single_face=True), timeout=120)
        assert done.status == "succeeded" and len(done.result.faces_obj["0"].landmarks) == 1
        listed = [summary async for summary in client.list("succeeded", page_size=1)]
    assert listed[0].detect_task_id == done.detect_task_id  # newest first
    assert {summary.status for summary in listed} == {"succeeded"}
