"""Download a URL to a file: SSRF-checked on every hop, size-capped, and bounded by a wall-clock deadline.

A task's several frame URLs are downloaded a few at once (``fetch_all``) under one shared deadline. The
caller only waits: it gives up at the first failure, at the deadline, or when the task is no longer wanted,
and cancels what is still running; a canceled download ends at its next read (its socket is shut down) and
nobody waits for it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import httpx

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from facequeue.core.ssrf import CheckedURL, check_url
from workers.pinned_http import Deadline, describe_transport_error, new_pinned_client, send_pinned

R = TypeVar("R")

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# How often a caller waiting on downloads looks at its deadline and asks whether the task is still wanted.
WAIT_CHECK_SECONDS = 0.5


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


@contextmanager
def _download_errors(target: CheckedURL, deadline: Deadline) -> Iterator[None]:
    """Translate transport failures into DOWNLOAD_FAILED with what exactly went wrong."""
    where = f"{target.host} ({', '.join(map(str, target.ips))}) port {target.port}"
    try:
        yield
    except httpx.HTTPError as exc:
        deadline.check()  # canceled or timed out: say that, not the broken read it caused
        raise TaskError(ErrorCode.DOWNLOAD_FAILED, f"{describe_transport_error(exc)} {where}") from exc


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
