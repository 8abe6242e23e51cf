"""Who is calling: API key -> tenant, and the per-key rate limit.

Every API takes the key as `Authorization: Bearer <key>` or `x-api-key`; when both are sent,
Bearer wins and x-api-key is ignored (seed 000). With FACEQUEUE_AUTH=off every caller is the
tenant-less local user.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from fastapi.concurrency import run_in_threadpool
from limits import parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers

from api.errors import RateLimited, ServiceUnavailable, Unauthorized
from db import tenants
from facequeue.core.settings import Settings
from facequeue.plumbing.broker import redis_options
from facequeue.plumbing.sessions import get_sessionmaker

MISSING_KEY = "Missing API key: send Authorization: Bearer <key> or x-api-key"
# an Authorization header with no key after a Bearer scheme ("Authorization: <key>", "Basic ..."): not "missing"
AUTHORIZATION_NOT_BEARER = (
    "The Authorization header has no Bearer key: send the API key as 'Authorization: Bearer <key>' "
    "or as 'x-api-key: <key>'"
)
INVALID_KEY = "Invalid API key"
CALLER_SCOPE_KEY = "facequeue.caller"  # where api/limits.py leaves the Caller for api/deps.py


@dataclass(frozen=True)
class Caller:
    tenant_id: str | None
    key_id: str | None


ANONYMOUS = Caller(tenant_id=None, key_id=None)


async def request_caller(headers: Headers, settings: Settings) -> Caller:
    """Who sent a request, from its headers alone: api/limits.py asks before any body byte is read."""
    if settings.auth == "off":
        return ANONYMOUS
    return await run_in_threadpool(_authenticate, headers, settings)  # a key lookup: blocking I/O


def presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def _authenticate(headers: Headers, settings: Settings) -> Caller:
    key = presented_key(headers)
    if key is None:
        raise Unauthorized(AUTHORIZATION_NOT_BEARER if headers.get("authorization", "").strip() else MISSING_KEY)
    with get_sessionmaker()() as session:
        found = tenants.find_active_key(session, key)
    if found is None:
        raise Unauthorized(INVALID_KEY)
    api_key, tenant = found
    enforce_rate_limit(api_key.id, api_key.rate_limit or tenant.rate_limit or settings.default_rate_limit, settings)
    return Caller(tenant_id=tenant.id, key_id=api_key.id)


def enforce_rate_limit(key_id: str, rate: str, settings: Settings) -> None:
    limit = parse(rate)
    limiter = _limiter(_storage_url(settings), settings.redis_timeout, settings.broker_key_prefix)
    try:
        if limiter.hit(limit, "api-key", key_id):
            return
        reset_at = limiter.get_window_stats(limit, "api-key", key_id).reset_time
    except StorageError as error:  # Redis is away: refused, not served without the limit every tenant relies on
        raise ServiceUnavailable() from error
    retry_after = max(1, math.ceil(reset_at - time.time()))
    raise RateLimited(f"Rate limit of {rate} exceeded; retry in {retry_after}s", retry_after)


def _storage_url(settings: Settings) -> str:
    """FACEQUEUE_RATE_LIMIT_STORAGE_URL, else the broker's Redis, so every API process shares the limits.
    `limits` spells a Unix socket redis+unix://, where redis-py has unix://."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    url = settings.redis_url
    return f"redis+{url}" if url.startswith("unix://") else url


@lru_cache
def _limiter(storage_url: str, redis_timeout: float, key_prefix: str) -> MovingWindowRateLimiter:
    # Redis storages wait at most FACEQUEUE_REDIS_TIMEOUT per call, and their keys start with
    # FACEQUEUE_BROKER_KEY_PREFIX like every other key; any storage's errors come out as StorageError
    options = (
        {**redis_options(redis_timeout), "key_prefix": f"{key_prefix}LIMITS"} if storage_url.startswith("redis") else {}
    )
    return MovingWindowRateLimiter(storage_from_string(storage_url, wrap_exceptions=True, **options))
