"""Lost messages and lost runs recovered quickly (issue 10, sections 2.1 and 2.7), with real Postgres, Redis
and Celery workers: which messages are published again, a broker that lost every message, a pool process killed under
its task, and a worker restarted under the name of one that died. The reaper's stale-heartbeat path is
never needed here (tests run it only when they call it)."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from werkzeug import Response

from facequeue.cli.demo import astronaut_bgr, moving_face_frames, write_video
from tests.conftest import WorkerProcess
from tests.support import BROKER_KEY_PREFIX, REDIS_URL, queue_key, wait_for_final, wait_until

pytestmark = pytest.mark.integration


def _rows_to_republish(now):
    """(id, status, queue, upload_key, created, published), with the default and fetch queues empty in the broker."""
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    return [
        ("fresh", "queued", "default", "u", ago(40), ago(10)),  # published 10 s ago: its publish may not be done
        ("lost", "queued", "default", "u", ago(700), ago(600)),  # its queue ran dry in front of it
        ("lost-before-fetch", "queued", "batch", None, ago(700), ago(600)),  # a URL task: its message was on fetch
        ("waiting", "queued", "interactive", "u", ago(7200), ago(3600)),  # behind others, however long: never
        ("never-published", "queued", "interactive", "u", ago(40), None),  # the publish after its commit failed
        ("held", "queued", "batch", "u", ago(40), None),  # a batch item the fair dispatcher holds back
        ("running", "processing", "default", "u", ago(500), ago(500)),
    ]


def test_only_missing_messages_are_published_again(clean_state) -> None:
    from db import tasks
    from db.models import DetectTask, utcnow
    from facequeue.lifecycle.publish import UNPUBLISHED_GRACE_SECONDS
    from facequeue.plumbing.sessions import session_scope

    now = utcnow()
    with session_scope() as session:
        for task_id, status, queue, upload, created, published in _rows_to_republish(now):
            session.add(
                DetectTask(
                    id=task_id,
                    status=status,
                    queue=queue,
                    upload_key=upload,
                    source_url=None if upload else "http://127.0.0.1/a.jpg",
                    created_at=created,
                    published_at=published,
                    params={},
                )
            )
    with session_scope() as session:
        due = tasks.queued_tasks_to_republish(session, UNPUBLISHED_GRACE_SECONDS, ["default", "fetch"])
        assert sorted(task.id for task in due) == ["lost", "lost-before-fetch", "never-published"]
        only_never_published = tasks.queued_tasks_to_republish(session, UNPUBLISHED_GRACE_SECONDS, [])
        assert [task.id for task in only_never_published] == ["never-published"]


def test_broker_that_lost_its_messages_gets_every_one_again(api_client) -> None:
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle.reaper import reap
    from facequeue.plumbing.sessions import session_scope

    settings = get_settings()
    broker = redis.Redis.from_url(REDIS_URL)
    submitted = [api_client.post("/v1/detect", json={"url": f"http://127.0.0.1/{n}.jpg"}) for n in range(3)]
    assert [response.status_code for response in submitted] == [202] * 3
    assert _messages(broker) == 3

    with session_scope() as session:  # no sentinel yet (a Redis this run never marked): sent again, harmless
        assert reap(session, settings).republished == 3
    with session_scope() as session:
        assert reap(session, settings).republished == 0  # marked intact: nothing is sent twice
    assert _messages(broker) == 6

    for key in broker.scan_iter(f"{BROKER_KEY_PREFIX}*"):  # Redis restarted without persistence
        broker.delete(key)
    with session_scope() as session:
        assert reap(session, settings).republished == 3
    assert _messages(broker) == 3


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Base64 of a 60-frame video with two faces: its detection takes seconds, so a kill lands mid-run."""
    frames = moving_face_frames(count=60, faces=2)
    return base64.b64encode(write_video(tmp_path_factory.mktemp("video") / "faces.mp4", frames).read_bytes()).decode()


def test_killed_pool_process_task_is_claimed_again_at_once(api_client, start_worker, long_video: str) -> None:
    """Only the dead pool process's task goes back: its sibling's run, on the same worker, keeps going."""
    worker = start_worker("pool", concurrency=2)
    doomed, sibling = (
        api_client.post("/v1/detect", json={"img": long_video, "num_frames": 60}).json()["detect_task_id"]
        for _ in range(2)
    )
    claims = {task_id: _wait_claimed(task_id, attempt=1) for task_id in (doomed, sibling)}
    assert claims[doomed].worker_name == claims[sibling].worker_name == f"{worker.name}@{os.uname().nodename}"
    assert claims[doomed].worker_pid != claims[sibling].worker_pid

    os.kill(claims[doomed].worker_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # The tests' reaper is off (FACEQUEUE_REAPER_INTERVAL=0): only the worker's own recovery can claim the task
    # again. How fast is printed, not asserted: a heavily loaded run took 15.4 s.
    reclaimed = _wait_claimed(doomed, attempt=2)
    reclaim_seconds = time.monotonic() - killed_at
    assert reclaimed.worker_pid != claims[doomed].worker_pid
    finals = [wait_for_final(api_client, task_id, timeout=180) for task_id in (doomed, sibling)]
    assert [(task["status"], task["attempts"]) for task in finals] == [("succeeded", 2), ("succeeded", 1)]
    assert "lost_runs_recovered" in worker.log()
    print(f"pool process killed: its task claimed again {reclaim_seconds:.1f}s later")


def test_worker_restarted_under_its_name_requeues_what_it_held(api_client, media_server, tmp_path: Path) -> None:
    release = threading.Event()
    media_server.expect_request("/hold.jpg").respond_with_handler(_held_image(release))
    first = WorkerProcess("restarted", tmp_path / "first.log", {}, concurrency=1)
    second = None
    try:
        first.wait_ready()
        task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/hold.jpg")}).json()[
            "detect_task_id"
        ]
        _wait_claimed(task_id, attempt=1)
        first.kill()  # the whole worker, as a crash or an OOM kill of its container would
        second = WorkerProcess("restarted", tmp_path / "second.log", {}, concurrency=1)
        second.wait_ready()
        _wait_claimed(task_id, attempt=2)
        release.set()
        task = wait_for_final(api_client, task_id)
        assert (task["status"], task["attempts"]) == ("succeeded", 2)
        assert "lost_runs_recovered" in second.log()
    finally:
        release.set()
        for worker in (first, second):
            if worker is not None:
                worker.stop()


def _messages(broker: redis.Redis) -> int:
    """Messages waiting in every queue of this test run."""
    from facequeue.core.enums import Queue

    return sum(broker.llen(queue_key(queue)) for queue in Queue)


def _held_image(release: threading.Event):
    """A JPEG whose body is held back until `release`: the task stays claimed, mid-download."""
    import cv2

    data = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()

    def handler(_request):
        def body():
            yield data[:100]
            release.wait(timeout=60)
            yield data[100:]

        return Response(body(), content_type="image/jpeg", headers={"Content-Length": str(len(data))})

    return handler


def _wait_claimed(task_id: str, attempt: int, timeout: float = 30):
    """The row once run `attempt` has claimed it."""
    from db.models import DetectTask
    from facequeue.plumbing.sessions import session_scope

    def row() -> DetectTask:
        with session_scope() as session:
            return session.get(DetectTask, task_id)

    return wait_until(
        row,
        until=lambda task: task.status == "processing" and task.attempts == attempt,
        timeout=timeout,
        what=f"{task_id} claimed by attempt {attempt}",
    )
