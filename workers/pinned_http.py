"""Outbound HTTP to SSRF-checked addresses, under a wall-clock deadline: what media downloads
(`workers.media.fetch`) and webhook deliveries (`workers.webhooks`) send with.

A request goes to the addresses the check resolved (never re-resolved, no proxy, no kept-alive connection that
could serve another host), and a `Deadline` bounds it across redirects, slow reads and stalls.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import httpx

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from facequeue.core.ssrf import CheckedURL, IPAddress


class DownloadCanceled(Exception):
    """The download was ended because its task gave up on it (another URL failed, the task was canceled)."""


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


@cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default verification (certifi's CA bundle), built once per process: building it reads the bundle,
    19 ms of CPU, which every download and webhook delivery paid while each client built its own
    (`python -m bench task_cost`)."""
    return httpx.create_ssl_context()


def new_pinned_client() -> httpx.Client:
    return httpx.Client(
        verify=_tls_context(),
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


def describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "timed out connecting to"
    if isinstance(exc, httpx.ReadTimeout):
        return "timed out waiting for data from"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({exc or 'connection failed'}) to"
    return f"{type(exc).__name__} ({exc or 'no detail'}) talking to"
