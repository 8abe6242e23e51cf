"""`facequeue serve` as a script and a person at its terminal meet it: the banner and the first key come once
the API answers, a client polling the API writes nothing on the terminal unless --verbose, and one scrape of
the API's /metrics counts the tasks the worker finished."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from facequeue.cli.demo import astronaut_bgr
from tests.support import free_port, port_taken, wait_for_final, wait_until

BANNER_API_LINE = re.compile(r"^  API      http://")
KEY_LINE = re.compile(r"first API key, for tenant 'default' \(shown once, store it now\): (fq_[\w-]{43})$")
STOPPED_LINE = "facequeue stopped"
NEVER_UP_LINE = "facequeue stopped: its API never answered"
POLLS = 20


class Serve:
    """`facequeue serve` in a process and a data dir of its own; what it prints, stdout and stderr together as
    on a terminal, is read line by line as it comes."""

    def __init__(self, data_dir: Path, options: tuple[str, ...], env: dict[str, str], port: int | None = None) -> None:
        clean = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "facequeue", "serve", "--port", str(self.port), *options],
            cwd=data_dir,
            env={**clean, "FACEQUEUE_DATA_DIR": str(data_dir), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: re.Pattern) -> re.Match | None:
        """The first line matching `pattern`, the moment it has been printed; None if serve exits first."""
        matches = wait_until(
            lambda: (
                [match for line in list(self.lines) if (match := pattern.search(line))]
                or self.process.poll() is not None
            ),
            timeout=90,
            what=f"a line matching {pattern.pattern!r} in serve's output",
            interval=0.01,
        )
        return matches[0] if isinstance(matches, list) else None

    def printed(self, pattern: re.Pattern) -> re.Match:
        match = self.wait_for_line(pattern)
        assert match is not None, "serve exited:\n" + "\n".join(self.lines)
        return match

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; then `lines` holds every line it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                raise
        self._reader.join(timeout=30)  # to the end of the output: the worker's processes are gone too


@contextmanager
def serving(data_dir: Path, *options: str, **env: str) -> Iterator[Serve]:
    """A serve whose banner is printed. A free port can be taken by another process before serve binds it (an
    outgoing connection may get it): serve then exits, and is started again on another, up to three times."""
    for _ in range(3):
        serve = Serve(data_dir, options, env)
        try:
            if serve.wait_for_line(BANNER_API_LINE) is not None:
                yield serve
                return
        finally:
            serve.stop()
        if not port_taken(serve.port):
            break
    pytest.fail("serve did not start:\n" + "\n".join(serve.lines))


def _poll_the_api(serve: Serve, key: str) -> None:
    """What a script waiting on a task does: GET after GET, each marked with a request id of its own."""
    with httpx.Client(base_url=serve.url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
        for n in range(POLLS):
            assert client.get("/v1/detect?limit=1", headers={"X-Request-ID": f"poll-{n}"}).status_code == 200


def _marked(lines: list[str]) -> list[str]:
    return [line for line in lines if re.search(r"request_id=poll-\d+\b", line)]


def test_banner_and_key_come_once_the_api_answers_and_polling_writes_nothing(tmp_path) -> None:
    with serving(tmp_path) as serve:  # which waits for the banner's line, and no more
        assert httpx.get(f"{serve.url}/healthz", timeout=10).status_code == 200  # at once: no retry
        key = serve.printed(KEY_LINE).group(1)
        _poll_the_api(serve, key)
    assert _marked(serve.lines) == []
    assert [line for line in serve.lines if "[api.request_ids]" in line] == []
    assert STOPPED_LINE in serve.lines


@pytest.mark.parametrize(
    ("options", "env"), [(("--verbose",), {}), ((), {"FACEQUEUE_LOG_LEVEL": "INFO"})], ids=["verbose", "log-level"]
)
def test_verbose_or_a_log_level_writes_a_line_per_request(tmp_path, options, env) -> None:
    with serving(tmp_path, *options, **env) as serve:
        _poll_the_api(serve, serve.printed(KEY_LINE).group(1))
    assert len(_marked(serve.lines)) == POLLS
    assert all(" path=/v1/detect " in line and " status=200" in line for line in _marked(serve.lines))
    assert STOPPED_LINE in serve.lines


def test_a_port_in_use_ends_serve_with_an_error_and_keeps_the_first_key_for_the_next_start(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        serve = Serve(tmp_path, (), {}, port=taken.getsockname()[1])
        try:
            assert serve.process.wait(timeout=90) != 0  # uvicorn's status for a failed start
        finally:
            serve.stop()
    assert NEVER_UP_LINE in serve.lines
    assert [line for line in serve.lines if "first API key" in line or BANNER_API_LINE.search(line)] == []
    with serving(tmp_path) as again:  # no key was made that nobody saw: the next start shows the first one
        again.printed(KEY_LINE)


def _samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Each sample called `name`: its labels and value."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]


def _total(exposition: str, name: str) -> float:
    return sum(value for _, value in _samples(exposition, name))


def test_one_scrape_of_the_api_counts_the_tasks_the_worker_finished(tmp_path) -> None:
    exporter_port = free_port()  # asked for, but serve's worker must not serve a second copy of the same files
    with serving(tmp_path, FACEQUEUE_WORKER_METRICS_PORT=str(exporter_port)) as serve:
        key = serve.printed(KEY_LINE).group(1)
        image = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()).decode()
        not_media = base64.b64encode(b"plain text, not an image\n" * 4).decode()
        with httpx.Client(base_url=serve.url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
            succeeded = wait_for_final(client, client.post("/v1/detect", json={"img": image}).json()["detect_task_id"])
            failed = wait_for_final(client, client.post("/v1/detect", json={"img": not_media}).json()["detect_task_id"])
            assert (succeeded["status"], failed["status"]) == ("succeeded", "failed")
            # the worker counts a task just after the commit that made it final, which the API may read first
            scrape = wait_until(
                lambda: client.get("/metrics").text,
                until=lambda text: _total(text, "facequeue_tasks_finished_total") == 2,
                timeout=30,
                what="both finished tasks counted",
                interval=0.2,
            )
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", exporter_port), timeout=5):
            pass
    finished = {
        (labels["status"], labels["error_code"]): value
        for labels, value in _samples(scrape, "facequeue_tasks_finished_total")
    }
    assert finished == {("succeeded", "none"): 1.0, ("failed", "unsupported_media"): 1.0}
    # in the same scrape: the worker's own families and the API's
    assert _total(scrape, "facequeue_task_processing_seconds_count") == 2
    assert _total(scrape, "facequeue_frames_processed_total") == 1
    assert _total(scrape, "facequeue_tasks_submitted_total") == 2


def test_serve_demo_on_a_fresh_data_dir_processes_the_clip_and_stops_on_ctrl_c(tmp_path) -> None:
    """`make run`: Postgres and Redis start as serve's children, the demo's clip is processed, and Ctrl-C
    leaves no process behind."""
    import psutil

    with serving(tmp_path, "--demo") as serve:
        children = {child.name() for child in psutil.Process(serve.process.pid).children()}
        assert {"postgres", "redis-server"} <= children
        serve.printed(re.compile(r"^task [\w-]{24} succeeded in [\d.]+s — video \d+x\d+"))
        started = psutil.Process(serve.process.pid).children(recursive=True)
        serve.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert serve.process.wait(timeout=60) == 130
    assert STOPPED_LINE in serve.lines
    _, still_running = psutil.wait_procs(started, timeout=30)
    assert [" ".join(child.cmdline()) for child in still_running] == []
