"""A task's upload is deleted once its final status commits, whoever wrote it: a real worker (succeeded,
failed), the API's cancel, and the reaper for a process that died in between. Preview frames, which the
worker keeps apart, stay until FACEQUEUE_PREVIEW_TTL. Postgres, local storage and S3 (moto)."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import cv2
import pytest
from sqlalchemy import update

from db import tasks
from db.models import DetectTask, utcnow
from facequeue.cli.demo import astronaut_bgr
from facequeue.core.settings import get_settings
from facequeue.core.storage import LocalStorage, MediaStorage, get_storage, previews_prefix, upload_key
from facequeue.lifecycle.finalize import on_task_final
from facequeue.lifecycle.reaper import reap
from facequeue.lifecycle.retention import delete_kept_uploads
from facequeue.plumbing.sessions import session_scope
from tests.support import wait_for_final, wait_until
from tests.test_retention_purge import sessions  # noqa: F401  (the test Postgres, emptied: a fixture)
from tests.test_storage import s3_settings  # noqa: F401  (moto's S3 server, a fixture)


def jpeg_b64() -> str:
    return base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()


def is_stored(storage: MediaStorage, key: str) -> bool:
    try:
        storage.read_bytes(key)
    except FileNotFoundError:
        return False
    return True


def wait_upload_deleted(task_id: str) -> None:
    """The worker deletes the upload, then clears the row's key, right after the final commit, which the API
    may see a moment before."""
    storage = get_storage(get_settings())
    wait_until(
        lambda: not is_stored(storage, upload_key(task_id)) and stored_upload_key(task_id) is None,
        timeout=10,
        what=f"task {task_id}'s upload deleted",
    )


def stored_upload_key(task_id: str) -> str | None:
    with session_scope() as session:
        return session.get(DetectTask, task_id).upload_key


def add_uploaded_task(session, storage: MediaStorage, status: str = "queued") -> str:
    task_id = uuid.uuid4().hex[:24]
    finished = utcnow() if status != "queued" else None
    session.add(DetectTask(id=task_id, status=status, upload_key=upload_key(task_id), finished_at=finished))
    storage.put_bytes(upload_key(task_id), b"face bytes")
    return task_id


def test_upload_goes_when_the_final_status_commits_and_stays_on_rollback(sessions) -> None:  # noqa: F811
    storage = get_storage(get_settings())
    with sessions() as session:
        kept, canceled = add_uploaded_task(session, storage), add_uploaded_task(session, storage)
        session.commit()
        assert tasks.cancel_task(session, kept)
        on_task_final(session, kept)
        session.rollback()  # not final after all: the task may still run, so its upload stays
        assert tasks.cancel_task(session, canceled)
        on_task_final(session, canceled)
        session.commit()
        assert is_stored(storage, upload_key(kept)) and not is_stored(storage, upload_key(canceled))
        session.expire_all()
        assert (session.get(DetectTask, kept).upload_key, session.get(DetectTask, canceled).upload_key) == (
            upload_key(kept),
            None,
        )


@pytest.mark.integration
def test_a_worker_deletes_the_upload_of_a_task_it_finished(api_client, start_worker) -> None:
    start_worker(FACEQUEUE_PREVIEW_TTL="2")
    succeeded = api_client.post("/v1/detect", json={"img": jpeg_b64()}).json()["detect_task_id"]
    truncated = base64.b64encode(base64.b64decode(jpeg_b64())[:2000]).decode()
    failed = api_client.post("/v1/detect", json={"img": truncated}).json()["detect_task_id"]
    assert wait_for_final(api_client, succeeded)["status"] == "succeeded"
    assert wait_for_final(api_client, failed)["error"]["code"] == "corrupt_media"
    for task_id in (succeeded, failed):
        wait_upload_deleted(task_id)
    # the frames kept for previews are the worker's own copies: they stay until FACEQUEUE_PREVIEW_TTL...
    storage: LocalStorage = get_storage(get_settings())
    previews = storage.path(previews_prefix(succeeded))
    assert [path.name for path in previews.iterdir()] == ["frame-0.jpg"]
    time.sleep(2.1)  # the behaviour under test: the worker's FACEQUEUE_PREVIEW_TTL of 2 s runs out
    with session_scope() as session:
        assert reap(session, get_settings()).previews_purged == 1
    assert not previews.exists()  # ...and then go


@pytest.mark.integration
def test_cancel_through_the_api_deletes_the_upload(api_client) -> None:
    task_id = api_client.post("/v1/detect", json={"img": jpeg_b64()}).json()["detect_task_id"]  # no worker: queued
    assert is_stored(get_storage(get_settings()), upload_key(task_id))
    assert api_client.post(f"/v1/detect/{task_id}/cancel").json()["status"] == "canceled"
    assert not is_stored(get_storage(get_settings()), upload_key(task_id)) and stored_upload_key(task_id) is None


@pytest.mark.integration
def test_the_reaper_deletes_an_upload_left_by_a_process_that_died(clean_state) -> None:
    storage = get_storage(get_settings())
    with session_scope() as session:  # final, committed, but never deleted: no after-commit step ran
        orphan = add_uploaded_task(session, storage, status="failed")
        live = add_uploaded_task(session, storage)
    with session_scope() as session:
        assert reap(session, get_settings()).uploads_deleted == 1
    assert not is_stored(storage, upload_key(orphan)) and stored_upload_key(orphan) is None
    assert is_stored(storage, upload_key(live)) and stored_upload_key(live) == upload_key(live)


@pytest.mark.integration
def test_uploads_are_deleted_on_s3(s3_settings, clean_state, tmp_path: Path) -> None:  # noqa: F811
    s3 = get_storage(s3_settings)
    s3.put_bytes("tasks/other/upload", b"another task's")
    with session_scope() as session:
        orphans = [add_uploaded_task(session, s3, status="succeeded") for _ in range(3)]
        session.commit()
        assert delete_kept_uploads(session, s3_settings, s3) == 3
        session.execute(update(DetectTask).values(upload_key="tasks/missing/upload"))  # already gone: no error
        session.commit()
        assert delete_kept_uploads(session, s3_settings, s3) == 3
    assert [is_stored(s3, upload_key(task_id)) for task_id in orphans] == [False, False, False]
    assert s3.read_bytes("tasks/other/upload") == b"another task's"
