from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from facequeue.core.errors import ErrorCode, TaskError
from workers.media.fetch import fetch_all, fetch_to_file
from workers.pinned_http import Deadline

LOCAL_ONLY = ["127.0.0.1/32"]
WAIT = 10.0  # seconds before downloads that should run together count as run one after the other


def _fetch_error(url: str, dest: Path, settings, deadline: Deadline | None = None) -> TaskError:
    with pytest.raises(TaskError) as caught:
        fetch_to_file(url, dest, settings, deadline)
    assert not any(dest.iterdir()), "a failed fetch must leave no file behind"
    return caught.value


def _redirect(location: str) -> Response:
    return Response(status=302, headers={"Location": location})


def _trickle(chunks: int, pause_s: float) -> Iterator[bytes]:
    for _ in range(chunks):
        yield b"x" * 100
        time.sleep(pause_s)


def test_downloads_body_with_metadata(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/photo.jpg").respond_with_data(b"jpeg bytes", content_type="image/jpeg")
    fetched = fetch_to_file(server.url_for("/photo.jpg"), tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert fetched.path.parent == tmp_path
    assert fetched.path.read_bytes() == b"jpeg bytes"
    assert fetched.size_bytes == len(b"jpeg bytes")
    assert fetched.content_type == "image/jpeg"
    assert fetched.final_url == server.url_for("/photo.jpg")


def test_loopback_is_refused_unless_allow_listed(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/photo.jpg").respond_with_data(b"jpeg bytes")
    error = _fetch_error(server.url_for("/photo.jpg"), tmp_path, make_settings())
    assert error.code == ErrorCode.URL_FORBIDDEN
    assert "address 127.0.0.1 is loopback" in error.detail


def test_follows_relative_redirects_up_to_the_limit(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    for hop in range(3):
        server.expect_request(f"/r{hop}").respond_with_response(_redirect(f"/r{hop + 1}"))
    server.expect_request("/r3").respond_with_data(b"arrived")
    settings = make_settings(allowed_hosts=LOCAL_ONLY, fetch_max_redirects=3)
    fetched = fetch_to_file(server.url_for("/r0"), tmp_path, settings)
    assert fetched.path.read_bytes() == b"arrived"
    assert fetched.final_url == server.url_for("/r3")


def test_redirect_chain_longer_than_the_limit_fails(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    for hop in range(4):
        server.expect_request(f"/r{hop}").respond_with_response(_redirect(f"/r{hop + 1}"))
    server.expect_request("/r4").respond_with_data(b"never reached")
    settings = make_settings(allowed_hosts=LOCAL_ONLY, fetch_max_redirects=3)
    error = _fetch_error(server.url_for("/r0"), tmp_path, settings)
    assert error.code == ErrorCode.DOWNLOAD_FAILED
    assert "too many redirects (more than 3)" in error.detail


@pytest.mark.parametrize(
    ("target", "detail"),
    [
        ("http://10.0.0.1/internal", "address 10.0.0.1 is private"),
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is link-local"),
        # Loopback, but outside the allow-listed 127.0.0.1/32.
        ("http://127.0.0.2:{port}/photo.jpg", "address 127.0.0.2 is loopback"),
    ],
)
def test_redirect_to_a_forbidden_address_is_refused(
    server: HTTPServer, tmp_path: Path, make_settings, target: str, detail: str
) -> None:
    server.expect_request("/jump").respond_with_response(_redirect(target.format(port=server.port)))
    error = _fetch_error(server.url_for("/jump"), tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert error.code == ErrorCode.URL_FORBIDDEN
    assert detail in error.detail


class _RebindingResolver:
    """Answers the allow-listed 127.0.0.1 for ``host`` the first time and 10.0.0.1 after that."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.lookups = 0
        self._real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != self.host:
            return self._real(host, port, *args, **kwargs)
        self.lookups += 1
        return self._real("127.0.0.1" if self.lookups == 1 else "10.0.0.1", port, *args, **kwargs)


def test_connects_to_the_checked_address_without_resolving_again(
    server: HTTPServer, tmp_path: Path, make_settings, monkeypatch
) -> None:
    resolver = _RebindingResolver("media.example")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    host = f"media.example:{server.port}"
    # Only matches when the original name arrives as the Host header.
    server.expect_request("/clip.mp4", headers={"Host": host}).respond_with_data(b"video bytes")
    fetched = fetch_to_file(f"http://{host}/clip.mp4", tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert fetched.path.read_bytes() == b"video bytes"
    assert resolver.lookups == 1, "the connection must reuse the checked IP, not look the name up again"


def test_every_redirect_hop_is_resolved_and_checked_again(
    server: HTTPServer, tmp_path: Path, make_settings, monkeypatch
) -> None:
    resolver = _RebindingResolver("media.example")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    host = f"media.example:{server.port}"
    server.expect_request("/jump").respond_with_response(_redirect(f"http://{host}/clip.mp4"))
    error = _fetch_error(f"http://{host}/jump", tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert error.code == ErrorCode.URL_FORBIDDEN
    assert "address 10.0.0.1 is private" in error.detail
    assert resolver.lookups == 2


def test_falls_back_to_the_next_checked_address(server: HTTPServer, tmp_path: Path, make_settings, monkeypatch) -> None:
    # Nothing listens on 127.0.0.3 (the server is bound to 127.0.0.1), like an IPv6 answer without an IPv6 route.
    real = socket.getaddrinfo

    def dual_stack(host, port, *args, **kwargs):
        answers = ["127.0.0.3", "127.0.0.1"] if host == "dual.example" else [host]
        return [info for ip in answers for info in real(ip, port, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", dual_stack)
    server.expect_request("/photo.jpg").respond_with_data(b"second address")
    url = f"http://dual.example:{server.port}/photo.jpg"
    fetched = fetch_to_file(url, tmp_path, make_settings(allowed_hosts=["dual.example"]))
    assert fetched.path.read_bytes() == b"second address"


def test_http_error_status_fails_the_download(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/missing.jpg").respond_with_data(b"nope", status=404)
    error = _fetch_error(server.url_for("/missing.jpg"), tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert error.code == ErrorCode.DOWNLOAD_FAILED
    assert "HTTP 404 Not Found" in error.detail


def test_refused_connection_fails_the_download(tmp_path: Path, make_settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    error = _fetch_error(f"http://127.0.0.1:{closed_port}/a.jpg", tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert error.code == ErrorCode.DOWNLOAD_FAILED
    assert "could not connect" in error.detail
    assert f"(127.0.0.1) port {closed_port}" in error.detail


def test_declared_length_over_the_cap_is_refused_up_front(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/big.jpg").respond_with_data(b"x" * 2000)
    settings = make_settings(allowed_hosts=LOCAL_ONLY, max_download_bytes=1000)
    error = _fetch_error(server.url_for("/big.jpg"), tmp_path, settings)
    assert error.code == ErrorCode.MEDIA_TOO_LARGE
    assert "Content-Length 2000 bytes exceeds the limit of 1000 bytes" in error.detail


def test_stream_without_length_is_cut_at_the_cap(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/endless").respond_with_response(Response(_trickle(chunks=50, pause_s=0)))
    settings = make_settings(allowed_hosts=LOCAL_ONLY, max_download_bytes=1000)
    error = _fetch_error(server.url_for("/endless"), tmp_path, settings)
    assert error.code == ErrorCode.MEDIA_TOO_LARGE
    assert error.detail == "download exceeds the limit of 1000 bytes"


def test_trickling_server_hits_the_total_deadline(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    # Each chunk comes well within the read timeout; only the total deadline can stop this.
    server.expect_request("/slow").respond_with_response(Response(_trickle(chunks=40, pause_s=0.1)))
    settings = make_settings(allowed_hosts=LOCAL_ONLY, fetch_read_timeout=5, fetch_total_timeout=0.5)
    started = time.monotonic()
    error = _fetch_error(server.url_for("/slow"), tmp_path, settings)
    assert error.code == ErrorCode.DOWNLOAD_FAILED
    assert error.detail == "download timed out after 0.5 s"
    assert time.monotonic() - started < 1.5


def test_stalled_body_is_cut_at_the_deadline_not_the_read_timeout(
    server: HTTPServer, tmp_path: Path, make_settings
) -> None:
    def stall(request: Request) -> Response:
        return Response(_trickle(chunks=2, pause_s=3))

    server.expect_request("/stall").respond_with_handler(stall)
    settings = make_settings(allowed_hosts=LOCAL_ONLY, fetch_read_timeout=10, fetch_total_timeout=0.5)
    started = time.monotonic()
    error = _fetch_error(server.url_for("/stall"), tmp_path, settings)
    assert error.code == ErrorCode.DOWNLOAD_FAILED
    assert error.detail == "download timed out after 0.5 s"
    assert time.monotonic() - started < 1.5


def test_empty_body_is_corrupt_media(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    server.expect_request("/empty.jpg").respond_with_data(b"")
    error = _fetch_error(server.url_for("/empty.jpg"), tmp_path, make_settings(allowed_hosts=LOCAL_ONLY))
    assert error.code == ErrorCode.CORRUPT_MEDIA
    assert "empty file" in error.detail


def test_fetch_all_downloads_together_and_keeps_url_order() -> None:
    both_running = threading.Barrier(2, timeout=WAIT)  # breaks (and fails the test) unless two run at once

    def fetch(position: int, url: str) -> str:
        both_running.wait()
        return f"{position}:{url}"

    assert fetch_all(fetch, ["a", "b"], concurrency=2, deadline=Deadline(WAIT)) == ["0:a", "1:b"]
    assert fetch_all(lambda position, url: url, ["x", "y", "z"], 1, Deadline(WAIT)) == ["x", "y", "z"]


def _drip(seconds: float, sent: threading.Event, closed: threading.Event) -> Iterator[bytes]:
    """One byte a second, as a drip-feeding server sends it; `closed` is set once the client hung up."""
    try:
        for _ in range(int(seconds)):
            yield b"x"
            sent.set()
            time.sleep(1)
    finally:  # the server closes the body once writing to a client that hung up fails
        closed.set()


def test_a_byte_a_second_is_cut_at_the_deadline(server: HTTPServer, tmp_path: Path, make_settings) -> None:
    sent, closed = threading.Event(), threading.Event()
    server.expect_request("/drip.jpg").respond_with_response(Response(_drip(60, sent, closed)))
    # every byte comes well within the read timeout: only the deadline, checked at each byte, stops it
    settings = make_settings(allowed_hosts=LOCAL_ONLY, fetch_read_timeout=10)
    started = time.monotonic()
    error = _fetch_error(server.url_for("/drip.jpg"), tmp_path, settings, Deadline(1.5))
    assert (error.code, error.detail) == (ErrorCode.DOWNLOAD_FAILED, "download timed out after 1.5 s")
    assert 1.5 <= time.monotonic() - started < 2.5
    assert closed.wait(WAIT), "the dripping connection must be closed, not left open"


def test_first_failure_cancels_the_other_downloads_without_waiting_for_them(
    server: HTTPServer, tmp_path: Path, make_settings
) -> None:
    sent, closed = threading.Event(), threading.Event()
    server.expect_request("/drip.jpg").respond_with_response(Response(_drip(60, sent, closed)))
    server.expect_request("/missing.jpg").respond_with_data(b"nope", status=404)
    settings = make_settings(allowed_hosts=LOCAL_ONLY)
    deadline = Deadline(60)

    def fetch(position: int, url: str) -> Path:
        if position == 1:
            assert sent.wait(WAIT)  # the drip is under way before the other URL fails
        folder = tmp_path / str(position)
        folder.mkdir()
        return fetch_to_file(url, folder, settings, deadline).path

    started = time.monotonic()
    with pytest.raises(TaskError, match="HTTP 404 Not Found"):
        fetch_all(fetch, [server.url_for("/drip.jpg"), server.url_for("/missing.jpg")], 2, deadline)
    assert time.monotonic() - started < 3
    assert deadline.canceled
    assert closed.wait(WAIT), "the dripping download must be cut, not left running"


def test_a_task_no_longer_wanted_stops_waiting_at_once() -> None:
    release = threading.Event()
    deadline = Deadline(60)

    def still_wanted() -> None:
        raise RuntimeError("task canceled")

    def fetch(position: int, url: str) -> str:
        release.wait(WAIT)  # a download that cannot be interrupted: nobody waits for it
        return url

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="task canceled"):
        fetch_all(fetch, ["a", "b"], 2, deadline, still_wanted)
    assert time.monotonic() - started < 2 and deadline.canceled
    release.set()


def test_the_deadline_ends_the_wait_even_when_a_download_is_stuck() -> None:
    release = threading.Event()

    def fetch(position: int, url: str) -> str:
        release.wait(WAIT)  # stuck where no socket can be cut (e.g. resolving the name)
        return url

    started = time.monotonic()
    with pytest.raises(TaskError, match="download timed out after 0.5 s"):
        fetch_all(fetch, ["a"], 1, Deadline(0.5))
    assert time.monotonic() - started < 1.5
    release.set()


def test_fetch_all_raises_the_first_failure() -> None:
    def fetch(position: int, url: str) -> str:
        if position == 1:
            raise RuntimeError("second URL failed")
        return url

    with pytest.raises(RuntimeError, match="second URL failed"):
        fetch_all(fetch, ["a", "b", "c"], 3, Deadline(WAIT))
