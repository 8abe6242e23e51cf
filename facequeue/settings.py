"""One settings class for every process; every field is read from a ``FACEQUEUE_`` environment variable."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

HostOrNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network | str
# Links built with no request to take the address from (webhook bodies): `facequeue serve`/`api`'s default.
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEQUEUE_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(Path(".facequeue"), description="Embedded default: SQLite file, broker folder, stored media")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir")
    broker_url: str | None = Field(
        None, description="Celery broker URL; default: kombu filesystem transport in data_dir"
    )
    broker_key_prefix: str = Field("", description="Prefix of every Redis key, so deployments can share one Redis")
    public_base_url: str | None = Field(
        None, description="Base of the links the API hands out; default: the request's (webhooks: 127.0.0.1:8000)"
    )

    # --- waiting on Postgres and Redis (a stopped or frozen server costs a request at most this) -----------
    database_connect_timeout: int = Field(2, ge=2, description="Seconds to open a database connection (libpq: >= 2)")
    database_timeout: float = Field(
        2.0, gt=0, description="Seconds a statement may run (statement_timeout) or wait for a pooled connection"
    )
    redis_timeout: float = Field(1.0, gt=0, description="Seconds to connect to Redis, and for each of its replies")

    # --- stored media (uploads, face crops) ----------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    media_url_ttl: int = Field(3600, description="Seconds a crop link stays valid")
    preview_ttl: float = Field(
        86400.0, ge=0, description="Seconds a task's frames are kept for annotated previews once it succeeded (0: none)"
    )
    signing_secret: SecretStr | None = Field(
        None, description="HMAC key for local media links; default: kept in data_dir"
    )
    retention: int = Field(
        30 * 86400,
        gt=0,
        description="How long a final task, its result, crops and webhook log are kept: 30d, 720h, 15m or seconds "
        "(a tenant's own, if set, wins)",
    )
    s3_bucket: str = "facequeue"
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    # --- fetching ----------------------------------------------------------
    allowed_hosts: Annotated[list[HostOrNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts or CIDRs that may be fetched even if private (e.g. 127.0.0.1)",
    )
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 15.0
    fetch_total_timeout: float = Field(
        120.0, description="Seconds all of a task's downloads may take (less when its soft time limit is shorter)"
    )
    fetch_max_redirects: int = 3
    max_download_bytes: int = 200 * 1024 * 1024
    max_upload_bytes: int = 25 * 1024 * 1024

    # --- decoding limits ---------------------------------------------------
    max_image_pixels: int = 64_000_000
    max_video_seconds: float = 3 * 3600.0
    max_video_side: int = 4096
    max_video_frames: int = 1_000_000
    max_animation_pixels: int = Field(
        2_000_000_000, description="Frames x canvas area of an animated image (GIF, APNG, WebP) sampled as a video"
    )

    # --- detection ---------------------------------------------------------
    detector_max_side: int = Field(1280, description="Frames are downscaled (never upscaled) to this long side")
    detector_score_threshold: float = 0.6
    detector_nms_threshold: float = 0.3
    detector_top_k: int = 5000
    detector_fusion: bool = Field(
        False, description="Fuse BlazeFace full range into every frame: better boxes on turned heads, +4-5 ms/frame"
    )

    # --- compat APIs ----------------------------------------------------------
    sync_timeout: float = Field(60.0, description="How long detect_faces, analyze_frames and face/analyze wait")
    max_sync_calls_per_key: int = Field(
        4, ge=1, description="Synchronous compat calls one API key may have waiting at once; 429 past it"
    )
    detect_id_ttl: float = Field(3600.0, description="Seconds a crun detect_id stays valid after the task finishes")
    # OpenCV's published cosine threshold for SFace; measured here: one person 0.70-0.78, different people <= 0.28.
    person_match_threshold: float = Field(0.363, description="SFace cosine at or above which two faces are one person")

    # --- tenants, limits, credits -------------------------------------------
    auth: Literal["on", "off"] = Field("on", description="off: no API keys (local development only)")
    default_rate_limit: str = Field("20/second", description="Per API key, in the `limits` notation")
    rate_limit_storage_url: str | None = Field(None, description="limits storage; default: Redis broker or memory")
    maintenance: bool = Field(False, description="Refuse new work with 455; polling still works")
    flag_cache_seconds: float = Field(
        1.0, description="How long an API process trusts its read of `maintenance on|off`"
    )
    disabled_features: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated: upstream, landmarks90, persons, crops"
    )
    upstream_credit_cost: int = Field(5, description="Credits an upstream-served image costs")
    tenant_max_in_flight: int = Field(4, description="Batch items of one tenant published or running at once")
    max_batch_items: int = Field(10_000, description="Items in one JSON batch request (JSONL uploads have no cap)")
    max_manifest_bytes: int = Field(
        2 * 1024**3, description="Body of a JSONL batch manifest (spooled to disk while it arrives); 413 past it"
    )

    # --- live task events (GET /v1/detect/{id}/events) -------------------------
    events_heartbeat: float = Field(
        15.0, gt=0, description="Seconds of silence after which a task's event stream sends a comment"
    )

    # --- webhooks -----------------------------------------------------------
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
        description="Seconds before each retry, comma-separated",
    )
    webhook_timeout: float = 15.0
    webhook_secret: SecretStr | None = Field(None, description="whsec_ secret for tasks without a tenant (auth off)")
    webhook_secret_grace: float = Field(
        86400.0, description="Seconds a tenant's previous whsec_ secret keeps signing after a rotation"
    )

    # --- upstream face APIs ---------------------------------------------------
    upstream_protocol: Literal["akool", "acedata"] = "akool"
    upstream_url: str | None = Field(None, description="Base URL of the upstream face API")
    upstream_api_key: SecretStr | None = None
    upstream_connect_timeout: float = 3.0
    upstream_read_timeout: float = 20.0
    upstream_max_attempts: int = 3
    upstream_breaker_failures: int = Field(5, description="Consecutive failures that open the circuit")
    upstream_breaker_reset: float = Field(30.0, description="Seconds before an open circuit lets one call try")

    # --- worker reliability -----------------------------------------------
    worker_concurrency: int = 2
    frame_prefetch: int = Field(2, description="Frames decoded ahead of detection on a second thread (0: off)")
    fetch_concurrency: int = Field(4, description="frame_urls one task downloads at once")
    fetch_pool_threads: int = Field(
        32, ge=1, description="Tasks a worker's fetch pool downloads at once (threads: a slow server holds no CPU slot)"
    )
    worker_cv_threads: int = Field(1, description="OpenCV threads per pool process (the pool already fills the cores)")
    worker_nice: int = Field(10, description="CPU niceness of pool processes, so a co-located API answers first")
    heartbeat_interval: float = 5.0
    heartbeat_stale_after: float = 60.0
    worker_alive_after: float = Field(
        30.0, gt=0, description="/readyz needs a worker heartbeat this recent; each worker beats 3 times per period"
    )
    max_attempts: int = 3
    reaper_interval: float = 15.0
    republish_queued_after: float = Field(
        60.0, description="Re-publish a queued task whose message may be lost; then each time it waited as long again"
    )
    image_soft_time_limit: float = 60.0
    image_time_limit: float = 90.0
    video_soft_time_limit: float = 900.0
    video_time_limit: float = 960.0

    # --- metrics ----------------------------------------------------------------
    worker_metrics_port: int = Field(0, description="Port of a worker's Prometheus exporter (0: none)")
    worker_metrics_addr: str = Field("0.0.0.0", description="Address the worker's exporter listens on")
    metrics_tenant_labels: bool = Field(
        False, description='Label task counters by tenant id (one series per tenant); off: tenant="all"'
    )
    metrics_cache_seconds: float = Field(
        5.0, description="How long a scrape reuses the backlog read from the database and the broker"
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    @field_validator("disabled_features", "webhook_retry_schedule", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [_host_or_network(item) if isinstance(item, str) else item for item in value]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.embedded_database_path}"

    @property
    def embedded_database_path(self) -> Path:
        """The SQLite file used when FACEQUEUE_DATABASE_URL is unset."""
        return (self.data_dir / "facequeue.db").resolve()

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_folder(self) -> Path:
        return (self.data_dir / "broker").resolve()

    @property
    def media_dir(self) -> Path:
        return (self.data_dir / "media").resolve()

    @property
    def is_embedded(self) -> bool:
        return self.resolved_broker_url.startswith("filesystem://")

    def public_base(self, request_base_url: str | None = None) -> str:
        """Base of every link the service hands out: FACEQUEUE_PUBLIC_BASE_URL, else the request's base URL,
        else DEFAULT_PUBLIC_BASE_URL."""
        return self.public_base_url or request_base_url or DEFAULT_PUBLIC_BASE_URL


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in a duration written as a whole number and an optional unit (s, m, h, d): 30d, 720h, 3600."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a duration such as 30d, 720h, 15m or 3600 (seconds)")
    return int(match[1]) * DURATION_UNITS[match[2] or "s"]


def _host_or_network(item: str) -> HostOrNetwork:
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        return item.lower()


@lru_cache
def get_settings() -> Settings:
    return Settings()
