"""Download a URL to a file: SSRF-checked on every hop, size-capped, and bounded by a wall-clock deadline.

A task's several frame URLs are downloaded a few at once (``fetch_all``) under one shared deadline. The
caller only waits: it gives up at the first failure, at the deadline, or when the task is no longer wanted,
and cancels what is still running; a canceled download ends at its next read (its socket is shut down) and
nobody waits for it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx

from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings
from facequeue.ssrf import CheckedURL, IPAddress, check_url

R = TypeVar("R")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# How often a caller waiting on downloads looks at its deadline and asks whether the task is still wanted.
WAIT_CHECK_SECONDS = 0.5


class DownloadCanceled(Exception):
    """The download was ended because its task gave up on it (another URL failed, the task was canceled)."""


@dataclass(frozen=True)
class FetchedMedia:
    path: Path
    size_bytes: int
    final_url: str
    content_type: str | None


def fetch_to_file(url: str, dest_dir: Path, settings: Settings, deadline: Deadline | None = None) -> FetchedMedia:
    """Fetch ``url`` into a new file in ``dest_dir`` within ``deadline`` (default: FACEQUEUE_FETCH_TOTAL_TIMEOUT);
    every failure is a TaskError (DownloadCanceled once the deadline was canceled) and leaves no file."""
    deadline = deadline or Deadline(settings.fetch_total_timeout)
    target = check_url(url, settings)
    redirects = 0
    with new_pinned_client() as client:
        while True:
            with (
                _download_errors(target, deadline),
                closing(send_pinned(client, target, settings, deadline)) as response,
            ):
                location = _redirect_location(response)
                if location is None:
                    _raise_for_status(response, target)
                    return _save_body(response, target, dest_dir, settings, deadline)
            if redirects == settings.fetch_max_redirects:
                raise TaskError(
                    ErrorCode.DOWNLOAD_FAILED, f"too many redirects (more than {settings.fetch_max_redirects})"
                )
            redirects += 1
            # Every hop is checked (and pinned) afresh: a public URL may redirect to an internal one.
            target = check_url(str(target.url.join(location)), settings)


def fetch_all(
    fetch: Callable[[int, str], R],
    urls: Sequence[str],
    concurrency: int,
    deadline: Deadline,
    still_wanted: Callable[[], None] = lambda: None,
) -> list[R]:
    """``fetch(position, url)`` for every URL, ``concurrency`` at a time on threads, results in URL order.

    The first download to fail, the deadline passing or ``still_wanted`` raising (the task was canceled) ends
    the wait at once: ``deadline`` is canceled, so the downloads still running stop at their next read, and
    that error is raised without waiting for them.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(urls))), thread_name_prefix="fetch")
    futures = [pool.submit(fetch, position, url) for position, url in enumerate(urls)]
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=min(WAIT_CHECK_SECONDS, deadline.left), return_when=FIRST_EXCEPTION)
            failed = next((future.exception() for future in done if future.exception() is not None), None)
            if failed is not None:
                raise failed
            still_wanted()
            if pending and deadline.expired:
                raise deadline.error()
        return [future.result() for future in futures]
    except BaseException:
        deadline.cancel()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Deadline:
    """Wall-clock budget for downloads (a task's, across its URLs) or a webhook attempt, across redirects, slow
    reads and stalls. ``cancel`` ends every download under it at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends_at = time.monotonic() + seconds
        self._canceled = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()  # cancel() and watch() on different threads

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._ends_at

    @property
    def left(self) -> float:
        return max(0.0, self._ends_at - time.monotonic())

    @property
    def canceled(self) -> bool:
        return self._canceled.is_set()

    def error(self) -> TaskError:
        return TaskError(ErrorCode.DOWNLOAD_FAILED, f"download timed out after {self.seconds:g} s")

    def check(self) -> None:
        """Raise once the downloads under this deadline should stop."""
        if self.canceled:
            raise DownloadCanceled
        if self.expired:
            raise self.error()

    def remaining(self) -> float:
        self.check()
        return self._ends_at - time.monotonic()

    def cancel(self) -> None:
        with self._lock:
            self._canceled.set()
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown_quietly(sock)

    def timeout(self, settings: Settings) -> httpx.Timeout:
        """Per-phase timeouts, none reaching past the deadline (covers connect and waiting for headers)."""
        left = self.remaining()
        connect = min(settings.fetch_connect_timeout, left)
        read = min(settings.fetch_read_timeout, left)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    @contextmanager
    def watch(self, response: httpx.Response) -> Iterator[None]:
        """Cut the connection when the deadline passes or is canceled, so a trickling body cannot outlive it."""
        network_stream = response.extensions.get("network_stream")
        sock = network_stream.get_extra_info("socket") if network_stream is not None else None
        if sock is None:
            yield
            return
        with self._lock:
            self._sockets.add(sock)
            canceled = self.canceled
        if canceled:
            _shutdown_quietly(sock)
        # socket.socket.shutdown acts on the descriptor, also beneath TLS; the blocked read then fails or ends.
        timer = threading.Timer(self.left, _shutdown_quietly, args=(sock,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            with self._lock:
                self._sockets.discard(sock)


def _shutdown_quietly(sock: socket.socket) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the download ended on its own


def new_pinned_client() -> httpx.Client:
    return httpx.Client(
        follow_redirects=False,
        # Proxies from the environment would resolve the host themselves and defeat the pinning.
        trust_env=False,
        # No connection reuse: a kept-alive connection to one pinned IP must not serve another host.
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"User-Agent": "facequeue", "Accept-Encoding": "identity"},
    )


def send_pinned(
    client: httpx.Client,
    target: CheckedURL,
    settings: Settings,
    deadline: Deadline,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send to the checked addresses only, trying them in the resolver's order until one accepts the
    connection, with the original host named in the Host header and for TLS (used for media and webhooks)."""
    headers = {**(headers or {}), "Host": target.url.netloc.decode("ascii")}
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}

    def send_to(ip: IPAddress) -> httpx.Response:
        pinned_url = target.url.copy_with(host=str(ip))
        request = client.build_request(
            method,
            pinned_url,
            content=content,
            headers=headers,
            extensions=extensions,
            timeout=deadline.timeout(settings),
        )
        return client.send(request, stream=True)

    *earlier, last = target.ips
    for ip in earlier:
        try:
            return send_to(ip)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue  # e.g. an IPv6 answer without an IPv6 route: try the next address
    return send_to(last)


@contextmanager
def _download_errors(target: CheckedURL, deadline: Deadline) -> Iterator[None]:
    """Translate transport failures into DOWNLOAD_FAILED with what exactly went wrong."""
    where = f"{target.host} ({', '.join(map(str, target.ips))}) port {target.port}"
    try:
        yield
    except httpx.HTTPError as exc:
        deadline.check()  # canceled or timed out: say that, not the broken read it caused
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"{describe_transport_error(exc)} {where}") from exc


def describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting to"
    if isinstance(exc, httpx.ReadTimeout):
        return "timed out waiting for data from"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc or 'connection failed'}) to"
    return f"{type(exc).__name__} ({exc or 'no detail'}) talking to"


def _redirect_location(response: httpx.Response) -> str | None:
    if response.status_code not in REDIRECT_STATUSES:
        return None
    location = response.headers.get("location")
    if not location:
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"HTTP {response.status_code} redirect without a Location header")
    return location


def _raise_for_status(response: httpx.Response, target: CheckedURL) -> None:
    if not response.is_success:
        # The standard phrase, not the server's: it is shown to clients and should read the same everywhere.
        status = f"HTTP {response.status_code} {httpx.codes.get_reason_phrase(response.status_code)}".rstrip()
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"{status} from {target.host}")


def _save_body(
    response: httpx.Response, target: CheckedURL, dest_dir: Path, settings: Settings, deadline: Deadline
) -> FetchedMedia:
    _check_declared_length(response, settings.max_download_bytes)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix="download-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, deadline.watch(response):
            size = _copy_capped(response, out, settings.max_download_bytes, deadline)
        deadline.check()  # a body delimited by connection close just "ends" when the watchdog cuts it
        if size == 0:
            raise TaskError(ErrorCode.CORRUPT_MEDIA, "empty file: the server sent 0 bytes")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FetchedMedia(
        path=path, size_bytes=size, final_url=str(target.url), content_type=response.headers.get("content-type")
    )


def _check_declared_length(response: httpx.Response, limit: int) -> None:
    try:
        declared = int(response.headers.get("content-length", ""))
    except ValueError:
        return  # absent or malformed: the streaming count still enforces the limit
    if declared > limit:
        raise TaskError(
            ErrorCode.MEDIA_TOO_LARGE, f"Content-Length {declared} bytes exceeds the limit of {limit} bytes"
        )


def _copy_capped(response: httpx.Response, out: BinaryIO, limit: int, deadline: Deadline) -> int:
    size = 0
    # Chunks as the network delivers them (no re-chunking), so even a byte-a-second body checks every byte.
    for chunk in response.iter_bytes():
        deadline.check()
        size += len(chunk)
        if size > limit:
            raise TaskError(ErrorCode.MEDIA_TOO_LARGE, f"download exceeds the limit of {limit} bytes")
        out.write(chunk)
    return size
