"""One settings class for every process; every field is read from a ``FACEQUEUE_`` environment variable."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from facequeue.core.durations import parse_duration
from facequeue.core.embedded_paths import redis_socket, socket_dir

HostOrNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network | str
# Links built with no request to take the address from (webhook bodies): `facequeue serve`/`api`'s default.
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEQUEUE_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------
    data_dir: Path = Field(
        Path(".facequeue"),
        description="The embedded Postgres (postgres/) and Redis (redis/) that `facequeue serve` starts, stored media, "
        "signing.key. Created 0700, signing.key 0600 (an existing directory keeps its mode)",
    )
    database_url: str | None = Field(
        None,
        description="e.g. postgresql+psycopg://host/db; default: the Postgres `facequeue serve` starts in data_dir",
    )
    broker_url: str | None = Field(
        None, description="e.g. redis://host:6379/0; default: the Redis `facequeue serve` starts in data_dir"
    )
    broker_key_prefix: str = Field("", description="Prefix of every Redis key, so deployments can share one Redis")
    public_base_url: str | None = Field(
        None,
        description="Base of the links the API hands out (crops, webhook result_url); default: the request's "
        "(webhooks: http://127.0.0.1:8000)",
    )

    # --- waiting on Postgres and Redis (a stopped or frozen server costs a request at most this) -----------
    database_connect_timeout: int = Field(
        2,
        ge=2,
        description="Seconds to open a Postgres connection (libpq's minimum is 2); after a failed one, new "
        "connections fail at once for 1 s",
    )
    database_timeout: float = Field(
        2.0,
        gt=0,
        description="Seconds a statement may run (Postgres statement_timeout) or wait for a pooled connection; a "
        "server that stopped answering is given up 0.5 s later",
    )
    redis_timeout: float = Field(
        1.0, gt=0, description="Seconds to connect to Redis and for each reply; a publish is tried twice"
    )

    # --- stored media (uploads, face crops) ----------------------------------
    storage_backend: Literal["local", "s3"] = Field("local", description="local: data_dir, served under signed links")
    media_url_ttl: int = Field(3600, description="Seconds a crop link stays valid")
    preview_ttl: float = Field(
        86400.0,
        ge=0,
        description="Seconds a task's frames (and the previews drawn on them) are kept for annotated previews once it "
        "succeeded; 0: no frames are kept, no previews",
    )
    signing_secret: SecretStr | None = Field(
        None,
        description="HMAC key of local crop links; default: kept in data_dir. Set the same value on every API host",
    )
    retention: int = Field(
        30 * 86400,
        gt=0,
        description="How long a final task, its result, crops and webhook log are kept after it finished (default "
        "30d): a whole number and a unit s, m, h or d (a bare number is seconds), e.g. 720h. A tenant's own "
        "(`facequeue tenants set-retention`) wins",
    )
    s3_bucket: str = Field("facequeue", description="Bucket for uploads and crops (s3 backend)")
    s3_prefix: str = Field("", description="Key prefix inside the bucket")
    s3_endpoint_url: str | None = Field(None, description="Any S3-compatible endpoint (MinIO, Ceph...); default: AWS")
    s3_region: str | None = Field(None, description="default: boto3's")
    s3_access_key_id: str | None = Field(None, description="default: boto3's credential chain")
    s3_secret_access_key: SecretStr | None = Field(None, description="default: boto3's credential chain")

    # --- fetching ----------------------------------------------------------
    allowed_hosts: Annotated[list[HostOrNetwork], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts or CIDRs that may be fetched even if private (e.g. 127.0.0.1)",
    )
    fetch_connect_timeout: float = Field(5.0, description="Seconds to connect")
    fetch_read_timeout: float = Field(15.0, description="Seconds between received bytes")
    fetch_total_timeout: float = Field(
        120.0,
        description="Seconds all of a task's downloads may take; less when 80% of its soft time limit is (48 s "
        "for an image)",
    )
    fetch_max_redirects: int = Field(3, description="Each hop is checked by the SSRF guard again")
    max_download_bytes: int = Field(200 * 1024 * 1024, description="Download cap (200 MiB)")
    max_upload_bytes: int = Field(
        25 * 1024 * 1024, description="Largest upload (25 MiB): decoded base64, or the file as the body; larger: 413"
    )

    # --- decoding limits ---------------------------------------------------
    max_image_pixels: int = Field(64_000_000, description="Checked from the header, before decoding")
    max_video_seconds: float = Field(3 * 3600.0, description="Longest accepted video")
    max_video_side: int = Field(4096, description="Largest accepted video width or height")
    max_video_frames: int = Field(1_000_000, description="Most frames a video may have (one timestamp each is kept)")
    max_animation_pixels: int = Field(
        2_000_000_000,
        description="Frames x canvas area of an animated GIF, APNG or WebP sampled as a video, checked before any "
        "decoding: each frame up to a sampled one is decoded (0.1-0.15 gigapixels/s measured: 20 s at this cap)",
    )

    # --- detection ---------------------------------------------------------
    detector_max_side: int = Field(1280, description="Frames are downscaled (never upscaled) to this long side")
    default_detector: Literal["local", "accurate"] = Field(
        "local", description="Detector of tasks that name none: local YuNet, or accurate CenterFace (15-20x the CPU)"
    )
    detector_score_threshold: float = Field(0.6, description="YuNet score threshold (a task's min_score wins)")
    # WIDER hard AP / extra faces on the dlib photos: 0.921 / 229 at 0.05, 0.868 / 8 at 0.3 (docs/api/tasks.md)
    detector_accurate_score_threshold: float = Field(0.3, description="CenterFace's (a task's min_score wins)")
    detector_nms_threshold: float = Field(0.3, description="YuNet NMS IoU")
    detector_top_k: int = Field(5000, description="YuNet candidates before NMS")
    detector_fusion: bool = Field(
        False,
        description="Fuse BlazeFace full range into every frame: better boxes on turned heads (dlib AP 0.968 -> "
        "1.000), +4-5 ms/frame; tiling always fuses",
    )

    # --- compat APIs ----------------------------------------------------------
    sync_timeout: float = Field(
        60.0, description="Seconds detect_faces, analyze_frames, face/analyze wait, then answer the id"
    )
    max_sync_calls_per_key: int = Field(
        4,
        ge=1,
        description="Synchronous compat calls one API key may have waiting at once; 429 with Retry-After past it",
    )
    detect_id_ttl: float = Field(3600.0, description="Seconds a crun detect_id stays valid after the task finishes")
    # OpenCV's published cosine threshold for SFace. Re-checked on ONNX Runtime, 107 labelled photos of 22 people:
    # every same-person pair 0.508 or more (345), 5 of 5326 different-person pairs 0.363-0.495; clustering 1.000.
    person_match_threshold: float = Field(0.363, description="SFace cosine at or above which two faces are one person")

    # --- tenants, limits, credits -------------------------------------------
    auth: Literal["on", "off"] = Field("on", description="off: no API keys (local development only!)")
    default_rate_limit: str = Field("20/second", description="Per key, unless it or its tenant has one")
    rate_limit_storage_url: str | None = Field(
        None, description="Any `limits` storage URL; default: the broker's Redis"
    )
    maintenance: bool = Field(False, description="Refuse new work with 455 (facequeue maintenance on)")
    flag_cache_seconds: float = Field(
        1.0, description="How long an API process trusts its read of `facequeue maintenance on/off`"
    )
    disabled_features: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated: upstream, landmarks90, persons, crops; requests needing one: 505",
    )
    upstream_credit_cost: int = Field(5, description="Credits per frame an upstream API serves")
    tenant_max_in_flight: int = Field(4, description="Batch items of one tenant queued or running at once")
    max_batch_items: int = Field(10_000, description="Items in one JSON batch request; send more as JSONL")
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
    webhook_timeout: float = Field(15.0, description="A delivery succeeds on a 2xx within this many seconds")
    webhook_secret: SecretStr | None = Field(None, description="whsec_ secret for tasks without a tenant")
    webhook_secret_grace: float = Field(
        86400.0, description="Seconds a tenant's previous whsec_ secret keeps signing after a rotation"
    )

    # --- upstream face APIs ---------------------------------------------------
    upstream_protocol: Literal["akool", "acedata"] = Field("akool", description="detect_faces or face/analyze")
    upstream_url: str | None = Field(None, description="Base URL of the upstream; unset: `auto` is local")
    upstream_api_key: SecretStr | None = Field(None, description="Sent as x-api-key (akool) or Bearer (acedata)")
    upstream_connect_timeout: float = Field(3.0, description="Seconds to connect")
    upstream_read_timeout: float = Field(20.0, description="Seconds to wait for an answer")
    upstream_max_attempts: int = Field(3, description="Tries per call, with backoff between")
    upstream_breaker_failures: int = Field(5, description="Consecutive failures that open the circuit")
    upstream_breaker_reset: float = Field(30.0, description="Seconds before an open circuit lets one call try")

    # --- worker reliability -----------------------------------------------
    worker_concurrency: int = Field(2, description="Pool processes per worker")
    frame_prefetch: int = Field(2, description="Frames decoded ahead of detection on a second thread (0: off)")
    frame_batch: int = Field(1, ge=1, le=64, description="Video frames or tiles per model run; CPU: 1 (bench engine)")
    fetch_concurrency: int = Field(4, description="frame_urls one task downloads at once")
    fetch_pool_threads: int = Field(
        32, ge=1, description="Tasks a worker's fetch pool downloads at once (threads: a slow server holds no CPU slot)"
    )
    worker_threads: int | None = Field(
        None,
        ge=1,
        description="Threads of each pool process's models (ONNX Runtime intra-op) and OpenCV; default: the usable "
        "cores // worker_concurrency (at least 1), so pool processes x threads never exceed the cores",
    )
    execution_providers: Annotated[list[Literal["cpu", "cuda", "tensorrt", "openvino"]], NoDecode] = Field(
        default_factory=lambda: ["cpu"],
        description="ONNX Runtime providers, comma-separated, first preferred (CPU stays the fallback): cuda and "
        "tensorrt need onnxruntime-gpu, openvino onnxruntime-openvino; a missing one stops the worker at start",
    )
    worker_nice: int = Field(10, description="CPU niceness of pool processes, so a co-located API answers first")
    heartbeat_interval: float = Field(5.0, description="Seconds between heartbeats of a running task")
    heartbeat_stale_after: float = Field(60.0, description="A running task silent this long is re-queued")
    worker_alive_after: float = Field(
        30.0, gt=0, description="/readyz needs a worker heartbeat this recent; each worker beats 3 times per period"
    )
    max_attempts: int = Field(3, description="Runs before a task whose worker keeps dying fails: worker_lost")
    reaper_interval: float = Field(
        15.0, description="Seconds between an API process's reaper passes, the first at start; one at a time; 0: off"
    )
    image_soft_time_limit: float = Field(60.0, description="Seconds of a CPU slot; then time_limit_exceeded")
    image_time_limit: float = Field(90.0, description="Hard limit: the pool process is replaced")
    video_soft_time_limit: float = Field(900.0, description="Also for media whose kind is not known yet")
    video_time_limit: float = Field(960.0, description="Hard limit for videos")

    # --- metrics ----------------------------------------------------------------
    worker_metrics_port: int = Field(
        0,
        description="Port of a worker's Prometheus exporter (0: none). Not used by `serve`: its API's /metrics "
        "shows its worker's metrics",
    )
    worker_metrics_addr: str = Field("0.0.0.0", description="Address the worker's exporter listens on")
    metrics_tenant_labels: bool = Field(
        False, description='Label task counters by tenant id (one series per tenant); off: tenant="all"'
    )
    metrics_cache_seconds: float = Field(
        5.0, description="How long a scrape reuses the backlog read from the database and the broker"
    )

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: Literal["console", "json"] = Field("console", description="json: one JSON object per line, every part")

    @field_validator("disabled_features", "webhook_retry_schedule", "execution_providers", mode="before")
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
        """The database URL; default: the embedded Postgres's socket folder (facequeue/core/embedded_paths.py)."""
        return self.database_url or f"postgresql+psycopg://postgres@/facequeue?host={socket_dir(self.data_dir)}"

    @property
    def resolved_broker_url(self) -> str:
        """Celery's broker URL (kombu spells a Unix socket redis+socket://)."""
        return self.broker_url or f"redis+socket://{redis_socket(self.data_dir)}"

    @property
    def redis_url(self) -> str:
        """The broker's Redis as redis-py spells it (a Unix socket is unix://)."""
        return self.broker_url or f"unix://{redis_socket(self.data_dir)}"

    @property
    def media_dir(self) -> Path:
        return (self.data_dir / "media").resolve()

    def public_base(self, request_base_url: str | None = None) -> str:
        """Base of every link the service hands out: FACEQUEUE_PUBLIC_BASE_URL, else the request's base URL,
        else DEFAULT_PUBLIC_BASE_URL."""
        return self.public_base_url or request_base_url or DEFAULT_PUBLIC_BASE_URL


def _host_or_network(item: str) -> HostOrNetwork:
    try:
        return ipaddress.ip_network(item, strict=False)
    except ValueError:
        return item.lower()


@lru_cache
def get_settings() -> Settings:
    return Settings()
