"""submit -> queue -> detect -> poll with real Celery worker processes on Postgres and Redis."""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from pathlib import Path

import cv2
import pytest
from werkzeug import Response

from facequeue.cli.demo import Placement, astronaut_bgr, compose, moving_face_frames, write_video
from tests.contract_examples import SEED_FRAME_KEYS
from tests.support import free_port, wait_for_final, wait_until

pytestmark = pytest.mark.integration


def jpeg(image) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def two_face_video(tmp_path_factory) -> bytes:
    path = write_video(tmp_path_factory.mktemp("video") / "two_faces.mp4", moving_face_frames(count=75, faces=2))
    return path.read_bytes()


def test_image_url_comes_back_in_seed_000_shape(api_client, worker, media_server) -> None:
    media_server.expect_request("/astronaut.jpg").respond_with_data(jpeg(astronaut_bgr()), content_type="image/jpeg")
    task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/astronaut.jpg")}).json()[
        "detect_task_id"
    ]
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded", task["error"]
    assert task["attempts"] == 1 and task["progress"] == {"done": 1, "total": 1}
    assert set(task["timings"]) == {"download", "decode", "detect", "total"}
    assert task["detector"] == "yunet" and task["model_version"] == "face_detection_yunet_2023mar_int8bq"
    result = task["result"]
    assert list(result["faces_obj"]) == ["0"]
    frame = result["faces_obj"]["0"]
    assert list(frame) == SEED_FRAME_KEYS
    assert frame["face_urls"] is frame["crop_region"] is frame["crop_landmarks"] is None
    assert len(frame["landmarks"]) == len(frame["region"]) == len(frame["landmarks_str"]) == 1
    assert len(frame["landmarks"][0]) == 6
    assert frame["removed"] == [] and frame["frame_time"] is None
    assert result["media"] == {
        "kind": "image",
        "mime": "image/jpeg",
        "width": 512,
        "height": 512,
        "duration": None,
        "fps": None,
        "frame_count": None,
    }
    assert result["detector"]["max_side"] == 1280
    assert result["frame_count"] == 1 and result["persons"] is None and result["face_shape_set"] is None
    assert 0.6 <= result["scores"]["0"][0] <= 1.0


def test_base64_group_image_counts_every_face(api_client, worker) -> None:
    group = compose(900, 320, [Placement(20 + 220 * k, 60, 180, mirrored=k % 2 == 1) for k in range(4)])
    task_id = api_client.post("/v1/detect", json={"img": "data:image/png;base64," + b64(png(group))}).json()[
        "detect_task_id"
    ]
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded", task["error"]
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 4
    single = api_client.post("/v1/detect", json={"img": b64(png(group)), "single_face": True}).json()["detect_task_id"]
    assert len(wait_for_final(api_client, single)["result"]["faces_obj"]["0"]["region"]) == 1


def test_video_samples_real_frame_indices_and_times(api_client, worker, two_face_video) -> None:
    task_id = api_client.post("/v1/detect", json={"img": b64(two_face_video), "num_frames": 5}).json()["detect_task_id"]
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded", task["error"]
    assert task["kind"] == "video" and task["progress"] == {"done": 5, "total": 5}
    faces_obj = task["result"]["faces_obj"]
    assert list(faces_obj) == ["0", "15", "30", "45", "60"]
    assert [faces_obj[k]["frame_time"] for k in faces_obj] == [0.0, 0.6, 1.2, 1.8, 2.4]
    assert all(len(faces_obj[k]["region"]) == 2 for k in faces_obj)
    # the heads slide right: each sampled frame's leftmost face is further right than the last
    lefts = [min(box[0] for box in faces_obj[k]["region"]) for k in faces_obj]
    assert lefts == sorted(lefts) and lefts[-1] > lefts[0]
    media = task["result"]["media"]
    assert (media["kind"], media["width"], media["height"], media["fps"], media["frame_count"]) == (
        "video",
        640,
        360,
        25.0,
        75,
    )
    assert media["duration"] == pytest.approx(3.0, abs=0.05)


def test_bad_input_fails_precisely_and_the_worker_survives(
    api_client, start_worker, media_server, two_face_video
) -> None:
    worker = start_worker(FACEQUEUE_MAX_DOWNLOAD_BYTES=str(2 * 1024 * 1024))
    good = jpeg(astronaut_bgr())
    media_server.expect_request("/truncated.jpg").respond_with_data(good[: len(good) // 3], content_type="image/jpeg")
    media_server.expect_request("/empty.jpg").respond_with_data(b"", content_type="image/jpeg")
    media_server.expect_request("/text.jpg").respond_with_data(b"hello, I am text\n" * 20, content_type="image/jpeg")
    media_server.expect_request("/truncated.mp4").respond_with_data(two_face_video[:2000], content_type="video/mp4")
    media_server.expect_request("/huge.jpg").respond_with_data(
        b"\xff\xd8" + b"0" * (3 * 1024 * 1024), content_type="image/jpeg"
    )
    media_server.expect_request("/to-internal").respond_with_data(
        "", status=302, headers={"Location": "http://10.0.0.1/a.jpg"}
    )
    media_server.expect_request("/missing.jpg").respond_with_data("nope", status=404)
    cases = {
        media_server.url_for("/truncated.jpg"): ("corrupt_media", "Media could not be decoded"),
        media_server.url_for("/empty.jpg"): ("corrupt_media", "Media could not be decoded"),
        media_server.url_for("/text.jpg"): ("unsupported_media", "Unsupported media type"),
        media_server.url_for("/truncated.mp4"): ("corrupt_media", "Media could not be decoded"),
        media_server.url_for("/huge.jpg"): ("media_too_large", "Failed to download media from URL"),
        media_server.url_for("/missing.jpg"): ("download_failed", "Failed to download media from URL: HTTP 404"),
        media_server.url_for("/to-internal"): ("url_forbidden", "Failed to download media from URL"),
        f"http://127.0.0.1:{free_port()}/a.jpg": ("download_failed", "Failed to download media from URL"),
        "http://no-such-host.invalid/a.jpg": ("download_failed", "Failed to download media from URL"),
    }
    # Literal addresses the worker would refuse are refused at submit already (tests/abuse covers the forms).
    for url, address in [
        ("http://10.0.0.1/a.jpg", "10.0.0.1 is private"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is link-local"),
        ("http://127.0.0.2/a.jpg", "127.0.0.2 is loopback"),
    ]:
        refused = api_client.post("/v1/detect", json={"url": url})
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "url_forbidden"
        assert refused.json()["error"]["message"] == f"Failed to download media from URL: address {address}"
    submitted = {url: api_client.post("/v1/detect", json={"url": url}).json()["detect_task_id"] for url in cases}
    for url, (code, message) in cases.items():
        task = wait_for_final(api_client, submitted[url])
        assert task["status"] == "failed", (url, task)
        assert task["error"]["code"] == code, (url, task["error"])
        assert task["error"]["message"].startswith(message), (url, task["error"])
        assert task["result"] is None
    redirected = wait_for_final(api_client, submitted[media_server.url_for("/to-internal")])
    assert "10.0.0.1" in redirected["error"]["message"]

    # same worker process, still healthy: the next good task succeeds
    assert worker.process.poll() is None
    media_server.expect_request("/good.jpg").respond_with_data(good, content_type="image/jpeg")
    ok = api_client.post("/v1/detect", json={"url": media_server.url_for("/good.jpg")}).json()["detect_task_id"]
    assert wait_for_final(api_client, ok)["status"] == "succeeded"


def _slow_media(data: bytes, release: threading.Event):
    """A handler that sends headers, then holds the body until `release` is set."""

    def handler(_request):
        def body():
            yield data[:100]
            release.wait(timeout=60)
            yield data[100:]

        return Response(body(), content_type="image/jpeg", headers={"Content-Length": str(len(data))})

    return handler


def _wait_status(api_client, task_id: str, status: str) -> dict:
    return wait_until(
        lambda: api_client.get(f"/v1/detect/{task_id}").json(),
        until=lambda task: task["status"] == status,
        timeout=30,
        what=f"task {task_id} {status}",
    )


def test_cancel_while_processing_is_honoured(api_client, worker, media_server) -> None:
    release = threading.Event()
    media_server.expect_request("/slow.jpg").respond_with_handler(_slow_media(jpeg(astronaut_bgr()), release))
    task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/slow.jpg")}).json()["detect_task_id"]
    _wait_status(api_client, task_id, "processing")
    assert api_client.delete(f"/v1/detect/{task_id}").json()["status"] == "canceled"
    release.set()
    # the worker finishes its download, sees it lost the task, and writes nothing
    media_server.expect_request("/next.jpg").respond_with_data(jpeg(astronaut_bgr()), content_type="image/jpeg")
    next_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/next.jpg")}).json()["detect_task_id"]
    assert wait_for_final(api_client, next_id)["status"] == "succeeded"
    task = api_client.get(f"/v1/detect/{task_id}").json()
    assert task["status"] == "canceled" and task["result"] is None and task["error"] is None
    # the run stopped at its next write (abandoned), or finished and found its final write refused
    log = worker.log()
    assert "detect_abandoned" in log or re.search(rf"detect_finished .*task_id={task_id} .*written=False", log)


def test_finished_task_delete_purges_result_and_media(api_client, worker) -> None:
    from facequeue.core.settings import get_settings
    from facequeue.core.storage import task_prefix

    body = {"img": b64(png(astronaut_bgr())), "return_face_url": True}
    task_id = api_client.post("/v1/detect", json=body).json()["detect_task_id"]
    assert wait_for_final(api_client, task_id)["status"] == "succeeded"
    stored = get_settings().media_dir / task_prefix(task_id)
    # crops and preview frames; the upload went when the task ended (tests/test_retention_uploads.py)
    assert (stored / "crops").is_dir() and (stored / "previews").is_dir()
    purged = api_client.delete(f"/v1/detect/{task_id}").json()
    assert purged["status"] == "succeeded" and purged["result"] is None
    assert not stored.exists()


def test_sigkilled_worker_task_is_reaped_and_finishes_once(api_client, start_worker, media_server) -> None:
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle.reaper import reap
    from facequeue.plumbing.sessions import session_scope

    release = threading.Event()
    data = jpeg(astronaut_bgr())
    media_server.expect_request("/hold.jpg").respond_with_handler(_slow_media(data, release))
    doomed = start_worker("doomed")
    task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/hold.jpg")}).json()["detect_task_id"]
    _wait_status(api_client, task_id, "processing")
    doomed.kill()
    release.set()

    survivor = start_worker("survivor")
    settings = get_settings()
    time.sleep(settings.heartbeat_stale_after + 0.5)  # the behaviour under test: the dead run's heartbeat goes stale
    with session_scope() as session:
        report = reap(session, settings)
    assert report.requeued == 1
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded" and task["attempts"] == 2
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 1
    assert survivor.process.poll() is None
    with session_scope() as session:
        assert reap(session, settings).requeued == 0  # nothing left to recover


def test_reaper_gives_up_after_max_attempts(api_client, database) -> None:
    from sqlalchemy import update

    from db.models import DetectTask, utcnow
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle.reaper import reap
    from facequeue.plumbing.sessions import session_scope

    settings = get_settings()
    task_id = api_client.post("/v1/detect", json={"url": "https://example.com/a.jpg"}).json()["detect_task_id"]
    with session_scope() as session:
        session.execute(
            update(DetectTask)
            .where(DetectTask.id == task_id)
            .values(status="processing", attempts=settings.max_attempts, heartbeat_at=utcnow().replace(year=2000))
        )
    with session_scope() as session:
        assert reap(session, settings).failed == 1
    task = api_client.get(f"/v1/detect/{task_id}").json()
    assert task["status"] == "failed" and task["error"]["code"] == "worker_lost"
    assert (
        task["error"]["message"]
        == "Task was abandoned by its workers too many times: heartbeat lost on each of 3 attempts"
    )


def test_lost_message_is_republished_and_duplicates_run_once(api_client, start_worker, media_server) -> None:
    import redis
    from sqlalchemy import update

    from db.models import DetectTask, utcnow
    from facequeue.core.settings import get_settings
    from facequeue.lifecycle.reaper import reap
    from facequeue.plumbing.broker import publish_detect
    from facequeue.plumbing.sessions import session_scope
    from tests.support import REDIS_URL, queue_key

    settings = get_settings()
    media_server.expect_request("/a.jpg").respond_with_data(jpeg(astronaut_bgr()), content_type="image/jpeg")
    task_id = api_client.post("/v1/detect", json={"url": media_server.url_for("/a.jpg")}).json()["detect_task_id"]
    # no worker yet: the broker loses the message (a URL's task goes to the fetch stage first)
    redis.Redis.from_url(REDIS_URL).delete(queue_key("fetch"))
    with session_scope() as session:
        session.execute(
            update(DetectTask).where(DetectTask.id == task_id).values(published_at=utcnow().replace(year=2000))
        )
    with session_scope() as session:
        assert reap(session, settings).republished == 1
    publish_detect(task_id, "default", "image", settings)  # and a stray duplicate on top

    worker = start_worker()
    task = wait_for_final(api_client, task_id)
    assert task["status"] == "succeeded" and task["attempts"] == 1
    # the duplicate found the task taken and did nothing
    wait_until(lambda: "detect_skipped" in worker.log(), timeout=10, what="the duplicate skipped")


def test_two_workers_share_a_burst(api_client, start_worker, media_server) -> None:
    first, second = start_worker("a"), start_worker("b")
    media_server.expect_request("/a.jpg").respond_with_data(jpeg(astronaut_bgr()), content_type="image/jpeg")
    ids = [
        api_client.post("/v1/detect", json={"url": media_server.url_for("/a.jpg"), "max_side": 640 + i}).json()[
            "detect_task_id"
        ]
        for i in range(8)
    ]
    tasks = [wait_for_final(api_client, task_id) for task_id in ids]
    assert [task["status"] for task in tasks] == ["succeeded"] * 8
    assert all(len(task["result"]["faces_obj"]["0"]["region"]) == 1 for task in tasks)
    assert "detect_finished" in first.log() and "detect_finished" in second.log()


def test_soft_time_limit_fails_the_task_and_keeps_the_worker(
    api_client, start_worker, media_server, two_face_video
) -> None:
    import redis

    from facequeue.core.settings import Settings
    from facequeue.plumbing.broker import publish_detect
    from tests.support import REDIS_URL, queue_key

    # 75 frames with 90-point shapes take a CPU slot 3 s of CPU time, so well over 1.5 s (downloads run on the
    # fetch pool with a deadline of their own: tests/test_fetch_stage.py)
    body = {"img": b64(two_face_video), "num_frames": 75, "landmarks": "90"}
    task_id = api_client.post("/v1/detect", json=body).json()["detect_task_id"]
    redis.Redis.from_url(REDIS_URL).delete(queue_key("default"))
    publish_detect(task_id, "default", "video", Settings(video_soft_time_limit=1.5, video_time_limit=10.0))
    # Not niced: on a loaded machine a niced pool process crawled, wrote progress at every frame (so the soft
    # limit's exception, raised wherever the run is, landed in a database write) and was still in its run at
    # the hard limit, which killed it and left the task processing.
    worker = start_worker(FACEQUEUE_WORKER_NICE="0")
    task = wait_for_final(api_client, task_id, timeout=30)
    assert task["status"] == "failed"
    assert task["error"] == {"code": "time_limit_exceeded", "message": "Task exceeded its time limit"}
    media_server.expect_request("/after.jpg").respond_with_data(jpeg(astronaut_bgr()), content_type="image/jpeg")
    after = api_client.post("/v1/detect", json={"url": media_server.url_for("/after.jpg")}).json()["detect_task_id"]
    assert wait_for_final(api_client, after)["status"] == "succeeded"
    assert worker.process.poll() is None


def test_pool_processes_run_niced_so_a_colocated_api_answers_first(start_worker) -> None:
    from facequeue.core.settings import get_settings

    worker = start_worker(concurrency=2)
    main = worker.process.pid

    def pool_niceness() -> list[int]:
        children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        # the fetch pool is a child too (started, not forked: its command line says so); it only waits on servers
        pool = [int(pid) for pid in children if b"--pools" not in Path(f"/proc/{pid}/cmdline").read_bytes()]
        return [os.getpriority(os.PRIO_PROCESS, pid) for pid in pool]

    # "ready" can be logged while a pool process is still running its init (where it lowers itself)
    wait_until(pool_niceness, until=lambda niceness: niceness == [10, 10], timeout=20, what="the pool niced")
    assert os.getpriority(os.PRIO_PROCESS, main) == 0  # the main process only moves messages
    assert pool_niceness() == [get_settings().worker_nice] * 2 == [10, 10]


def test_an_id_never_starts_with_a_dash_which_a_command_line_reads_as_an_option(monkeypatch) -> None:
    import secrets

    from db.models import new_task_id

    drawn = iter(["-T3wJ5qz0kQmN8xYcVb2Lh7R", "T3wJ5qz0kQmN8xYcVb2Lh7R-"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda _: next(drawn))
    assert new_task_id() == "T3wJ5qz0kQmN8xYcVb2Lh7R-"
