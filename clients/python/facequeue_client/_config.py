"""Where the client connects and how (base URL, API key, timeouts, from arguments or the environment), and the
constructor both clients share."""

from __future__ import annotations

import os
from typing import Any

import httpx

from facequeue_client._api import Api
from facequeue_client._flows import PollPolicy, RetryPolicy

VERSION = "0.1.0"  # the distribution's version too (pyproject.toml reads it from here)
DEFAULT_SERVER = "http://127.0.0.1:8000"  # where `facequeue serve` listens by default
SERVER_ENV = "FACEQUEUE_SERVER"
API_KEY_ENV = "FACEQUEUE_API_KEY"
# Connecting fails fast; reading allows for a large upload being stored, or a long results stream pausing.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def resolved_server(base_url: str | None) -> str:
    return (base_url or os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rstrip("/")


def http_options(base_url: str, api_key: str | None, timeout: float | httpx.Timeout | None) -> dict[str, Any]:
    """Keyword arguments of httpx.Client / httpx.AsyncClient."""
    key = api_key or os.environ.get(API_KEY_ENV)
    headers = {"User-Agent": f"facequeue-client/{VERSION}"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {
        "base_url": base_url,
        "headers": headers,
        "timeout": DEFAULT_TIMEOUT if timeout is None else timeout,
    }


class ClientBase:
    """What Client and AsyncClient share. `base_url` defaults to FACEQUEUE_SERVER (else DEFAULT_SERVER),
    `api_key` to FACEQUEUE_API_KEY; `timeout` (seconds or an httpx.Timeout) bounds every request;
    `retry` and `poll` tune the retries on 429/503 and the pace of `wait`."""

    http_class: type[httpx.Client] | type[httpx.AsyncClient]

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
    ) -> None:
        self.base_url = resolved_server(base_url)
        self._http = self.http_class(**http_options(self.base_url, api_key, timeout))
        self._api = Api(retry or RetryPolicy(), poll or PollPolicy())
        self.request_count = 0  # HTTP requests sent, retries included: the cost of a `wait` is the difference
