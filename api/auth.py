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

from fastapi import Request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session

from api.errors import RateLimited, Unauthorized
from db import tenants
from facequeue.settings import Settings

MISSING_KEY = "Missing API key: send Authorization: Bearer <key> or x-api-key"
INVALID_KEY = "Invalid API key"


@dataclass(frozen=True)
class Caller:
    tenant_id: str | None
    key_id: str | None


ANONYMOUS = Caller(tenant_id=None, key_id=None)


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def authenticate(request: Request, session: Session, settings: Settings) -> Caller:
    """The caller of a request when auth is on (with auth off every caller is ANONYMOUS, see api/deps.py)."""
    key = presented_key(request)
    if key is None:
        raise Unauthorized(MISSING_KEY)
    found = tenants.find_active_key(session, key)
    if found is None:
        raise Unauthorized(INVALID_KEY)
    api_key, tenant = found
    enforce_rate_limit(api_key.id, api_key.rate_limit or tenant.rate_limit or settings.default_rate_limit, settings)
    return Caller(tenant_id=tenant.id, key_id=api_key.id)


def enforce_rate_limit(key_id: str, rate: str, settings: Settings) -> None:
    limit = parse(rate)
    limiter = _limiter(_storage_url(settings))
    if not limiter.hit(limit, "api-key", key_id):
        reset_at = limiter.get_window_stats(limit, "api-key", key_id).reset_time
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(f"Rate limit of {rate} exceeded; retry in {retry_after}s", retry_after)


def _storage_url(settings: Settings) -> str:
    """Redis when distributed (limits shared by every API process), memory when embedded."""
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    broker = settings.resolved_broker_url
    return broker if broker.startswith(("redis://", "rediss://")) else "memory://"


@lru_cache
def _limiter(storage_url: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(storage_url))
