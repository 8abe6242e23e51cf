"""The embedded default end to end: `facequeue serve` with no database or broker URL, on the Postgres and Redis it
starts in its data dir."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import pytest

from facequeue.cli.demo import astronaut_bgr, moving_face_frames, write_video
from tests.conftest import REPO_ROOT
from tests.support import start_server, wait_for_final, wait_until


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("embedded")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEQUEUE_")}
    env.update(FACEQUEUE_DATA_DIR=str(data_dir), FACEQUEUE_ALLOWED_HOSTS="127.0.0.1/32", FACEQUEUE_REAPER_INTERVAL="1")
    server, process = start_server(
        lambda port: [sys.executable, "-m", "facequeue", "serve", "--port", str(port)],
        data_dir / "serve.log",
        env,
        ready_path="/readyz",
        cwd=data_dir,
        new_session=True,
    )
    yield server, data_dir, _first_key(data_dir / "serve.log"), process
    started = descendants(process.pid)
    process.terminate()
    process.wait(timeout=60)
    # SIGTERM to serve ends its worker, the worker's pools, Postgres and Redis (the worker once outlived it)
    assert [child.pid for child in started if _running(child)] == []


def _first_key(log: Path) -> str:
    """serve prints the first API key once, on first start, once its API answers (maybe after /readyz did)."""
    # fq_ and 43 url-safe characters (token_urlsafe(32)): the next line, joined on, may start with word characters
    key_line = re.compile(r"first API key, for tenant 'default' \(shown once, store it now\): (fq_[\w-]{43})")
    text = wait_until(
        lambda: log.read_text().replace("\n", ""), until=key_line.search, timeout=30, what="the first key's line"
    )
    return key_line.search(text).group(1)


def test_embedded_defaults_keep_everything_in_the_data_dir(embedded_server) -> None:
    import psutil

    _, data_dir, _, process = embedded_server
    assert (data_dir / "postgres" / "PG_VERSION").read_text().strip() == "16"
    assert (data_dir / "run" / ".s.PGSQL.5432").is_socket() and (data_dir / "run" / "redis.sock").is_socket()
    assert any(path.name.startswith("appendonly.aof") for path in (data_dir / "redis").iterdir())  # AOF is on
    servers = {child.name(): child for child in psutil.Process(process.pid).children()}
    assert {"postgres", "redis-server"} <= set(servers)
    for server in (servers["postgres"], servers["redis-server"]):
        assert [c.laddr for c in server.net_connections(kind="inet")] == []  # Unix sockets only: no TCP port
    for backend in servers["postgres"].children():
        with contextlib.suppress(psutil.NoSuchProcess):  # another test's connection may end meanwhile
            assert [c.laddr for c in backend.net_connections(kind="inet")] == []
    log = (data_dir / "serve.log").read_text()
    assert "Postgres and Redis started in the data dir" in log
    assert "broker_lost_messages" not in log  # a new Redis lost nothing: no task is published twice
    assert "data lives in" in log and str(data_dir) in log.replace("\n", "")  # rich may wrap the path


def test_the_embedded_postgres_has_pgvector(embedded_server) -> None:
    import psycopg

    _, data_dir, _, _ = embedded_server
    with psycopg.connect(host=str(data_dir / "run"), user="postgres", dbname="facequeue") as connection:
        assert connection.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone() == (
            "0.8.5",
        )


def test_embedded_image_and_video(embedded_server, tmp_path) -> None:
    import base64

    server, _, key, _ = embedded_server
    assert httpx.post(f"{server}/v1/detect", json={"url": "https://e.com/a.jpg"}).status_code == 401
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(count=50, faces=1))
    image = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
    with httpx.Client(base_url=server, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        image_id = client.post("/v1/detect", json={"img": base64.b64encode(image).decode()}).json()["detect_task_id"]
        video_id = client.post(
            "/v1/detect", json={"img": base64.b64encode(video.read_bytes()).decode(), "num_frames": 10}
        ).json()["detect_task_id"]
        image_task = wait_for_final(client, image_id)
        video_task = wait_for_final(client, video_id)
    assert image_task["status"] == "succeeded" and len(image_task["result"]["faces_obj"]["0"]["region"]) == 1
    assert video_task["status"] == "succeeded"
    faces_obj = video_task["result"]["faces_obj"]
    assert list(faces_obj) == [str(i * 5) for i in range(10)]
    assert all(len(frame["region"]) == 1 for frame in faces_obj.values())


def test_embedded_url_is_downloaded_by_the_fetch_pool(embedded_server, media_server) -> None:
    server, _, key, process = embedded_server
    media_server.expect_request("/a.jpg").respond_with_data(
        cv2.imencode(".jpg", astronaut_bgr())[1].tobytes(), content_type="image/jpeg"
    )
    with httpx.Client(base_url=server, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        task_id = client.post("/v1/detect", json={"url": media_server.url_for("/a.jpg")}).json()["detect_task_id"]
        task = wait_for_final(client, task_id)
    assert task["status"] == "succeeded" and task["attempts"] == 1
    assert len(task["result"]["faces_obj"]["0"]["region"]) == 1
    # `serve` starts no extra command: its worker started the fetch pool itself
    import psutil

    (worker,) = _worker_pids(process.pid)
    assert any("--pools" in child.cmdline() for child in psutil.Process(worker).children())


def test_cli_detect_against_the_embedded_server(embedded_server, tmp_path) -> None:
    import json

    server, _, key, _ = embedded_server
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), astronaut_bgr())
    done = subprocess.run(
        [sys.executable, "-m", "facequeue", "detect", str(photo), "--json", "--server", server, "--api-key", key],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["status"] == "succeeded" and len(task["result"]["faces_obj"]["0"]["landmarks"]) == 1


def test_cli_detect_reports_a_failed_task(embedded_server, tmp_path) -> None:
    server, _, key, _ = embedded_server
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all\n" * 10)
    done = subprocess.run(
        [sys.executable, "-m", "facequeue", "detect", str(text), "--json", "--server", server],
        env={**os.environ, "FACEQUEUE_API_KEY": key},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert '"code": "unsupported_media"' in done.stdout


def _worker_pids(serve_pid: int) -> list[int]:
    """The embedded worker's main process: the serve process's child running `facequeue worker`."""
    import psutil

    pids = []
    for child in psutil.Process(serve_pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "worker" in child.cmdline():
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            continue  # exited between listing and reading it
    return pids


def descendants(pid: int) -> list:
    """Every process `pid` started, and theirs."""
    import psutil

    return psutil.Process(pid).children(recursive=True)


def _worker_tree(serve_pid: int) -> list:
    import psutil

    workers = [psutil.Process(pid) for pid in _worker_pids(serve_pid)]
    return workers + [child for worker in workers for child in worker.children(recursive=True)]


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_embedded_worker_is_restarted_when_it_dies(embedded_server) -> None:
    import base64
    import signal

    server, data_dir, key, process = embedded_server
    (first,) = _worker_pids(process.pid)
    # run alone, this test can come before the worker has forked its pool
    first_pool = wait_until(lambda: _worker_tree(process.pid)[1:], timeout=30, what="the worker's pool")
    os.kill(first, signal.SIGKILL)
    (second,) = wait_until(
        lambda: _worker_pids(process.pid),
        until=lambda pids: pids not in ([], [first]),
        timeout=30,
        what="a new worker",
        interval=0.2,
    )
    assert second != first
    assert "worker exited with code" in (data_dir / "serve.log").read_text()
    assert first_pool and [child.pid for child in first_pool if _running(child)] == []  # no orphans left
    image = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()
    with httpx.Client(base_url=server, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        task_id = client.post("/v1/detect", json={"img": image}).json()["detect_task_id"]
        assert wait_for_final(client, task_id, timeout=60)["status"] == "succeeded"
