"""Where uploaded media and face crops live, shared by the API (writes uploads, serves links) and workers.

Two backends behind one protocol:
- local filesystem under the data directory (the default); the API serves its files under
  HMAC-signed, expiring URLs (`/v1/media/...`);
- S3-compatible object storage through boto3, linked by presigned URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

from facequeue.core.settings import Settings

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
S3_DELETE_BATCH = 1000  # the most keys one DeleteObjects request takes


class MediaStorage(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def put_file(self, key: str, source: Path, content_type: str = "application/octet-stream") -> None:
        """Store the file at `source` (which may be moved away) without reading it into memory."""
        ...

    def fetch_to(self, key: str, workdir: Path) -> Path:
        """A local file with the object's bytes (the stored file itself where possible)."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is no such object."""
        ...

    def delete_prefix(self, prefix: str) -> None: ...

    def delete_keys(self, keys: list[str]) -> None:
        """Delete these objects (absent ones are no error), in as few requests as the backend allows."""
        ...

    def url_for(self, key: str, base_url: str) -> str:
        """An unguessable link to the object that expires after the configured TTL."""
        ...


class LocalStorage:
    def __init__(self, root: Path, signing_key: bytes, url_ttl: int) -> None:
        self.root = Path(os.path.abspath(root))  # normalised as `path` normalises keys: no file system call
        self.signing_key = signing_key
        self.url_ttl = url_ttl

    def path(self, key: str) -> Path:
        # normalised as text, not resolved: the keys are ours, and nothing inside the root is a link
        path = Path(os.path.normpath(self.root / key))
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def put_file(self, key: str, source: Path, content_type: str = "application/octet-stream") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        shutil.move(source, tmp)  # a rename on the same file system, else a copy
        tmp.replace(path)

    def fetch_to(self, key: str, workdir: Path) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"stored media {key!r} is missing")
        return path

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def url_for(self, key: str, base_url: str) -> str:
        expires = int(time.time()) + self.url_ttl
        query = urlencode({"expires": expires, "sig": self.signature(key, expires)})
        return f"{base_url.rstrip('/')}/v1/media/{quote(key)}?{query}"

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self.signing_key, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def verify(self, key: str, expires: int, signature: str) -> bool:
        return expires >= time.time() and hmac.compare_digest(self.signature(key, expires), signature)


class S3Storage:
    def __init__(self, client, bucket: str, prefix: str, url_ttl: int) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url_ttl = url_ttl

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._object(key), Body=data, ContentType=content_type)

    def put_file(self, key: str, source: Path, content_type: str = "application/octet-stream") -> None:
        self.client.upload_file(str(source), self.bucket, self._object(key), ExtraArgs={"ContentType": content_type})

    def fetch_to(self, key: str, workdir: Path) -> Path:
        from botocore.exceptions import ClientError

        target = workdir / Path(key).name
        try:
            self.client.download_file(self.bucket, self._object(key), str(target))
        except ClientError as error:
            raise FileNotFoundError(f"stored media {key!r} is missing: {error}") from error
        return target

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"].read()
        except ClientError as error:
            raise FileNotFoundError(f"stored media {key!r} is missing: {error}") from error

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._object(prefix)):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), S3_DELETE_BATCH):
            objects = [{"Key": self._object(key)} for key in keys[start : start + S3_DELETE_BATCH]]
            refused = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            if refused.get("Errors"):  # S3 answers 200 and lists the keys it could not delete
                raise OSError(f"S3 kept {len(refused['Errors'])} objects: {refused['Errors'][0].get('Code')}")

    def url_for(self, key: str, base_url: str) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._object(key)}, ExpiresIn=self.url_ttl
        )


def get_storage(settings: Settings) -> MediaStorage:
    if settings.storage_backend == "s3":
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        client = _s3_client(settings.s3_endpoint_url, settings.s3_region, settings.s3_access_key_id, secret)
        return S3Storage(client, settings.s3_bucket, settings.s3_prefix, settings.media_url_ttl)
    return LocalStorage(settings.media_dir, signing_key(settings), settings.media_url_ttl)


@lru_cache
def _s3_client(endpoint_url: str | None, region: str | None, access_key_id: str | None, secret: str | None):
    # boto3 clients are thread-safe and slow to build: one per configuration and process
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
    )


def signing_key(settings: Settings) -> bytes:
    """The configured secret, or one kept in the data directory (fine for one host; set it when there are several)."""
    if settings.signing_secret is not None:
        return settings.signing_secret.get_secret_value().encode()
    path = ensure_data_dir(settings) / "signing.key"
    if not path.exists():
        tmp = path.with_name(f"signing.key.{secrets.token_hex(4)}")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "w") as file:
            file.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # atomic create-if-absent: when processes race, the first key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def ensure_data_dir(settings: Settings) -> Path:
    """The data directory, created readable by this user only: it holds the signing key, the files of the Postgres
    `facequeue serve` starts (webhook secrets) and the media. An existing directory keeps the mode its owner gave
    it."""
    settings.data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return settings.data_dir


def upload_key(task_id: str) -> str:
    return f"tasks/{task_id}/upload"


def fetched_key(task_id: str) -> str:
    """What the fetch stage downloaded for a task, stored as its upload (workers/fetch_stage.py)."""
    return f"tasks/{task_id}/fetched"


def crop_key(task_id: str, name: str) -> str:
    return f"tasks/{task_id}/crops/{name}.jpg"


def collection_prefix(collection_pk: int) -> str:
    """A face collection's crops, deleted with it."""
    return f"collections/{collection_pk}"


def collection_face_key(collection_pk: int, face_id: str) -> str:
    return f"{collection_prefix(collection_pk)}/{face_id}.jpg"


def task_prefix(task_id: str) -> str:
    return f"tasks/{task_id}"


def previews_prefix(task_id: str) -> str:
    """Frames kept for annotated previews and the previews drawn from them, purged after FACEQUEUE_PREVIEW_TTL."""
    return f"tasks/{task_id}/previews"


def preview_frame_key(task_id: str, frame: str) -> str:
    return f"{previews_prefix(task_id)}/frame-{frame}.jpg"


def annotated_preview_key(task_id: str, name: str) -> str:
    return f"{previews_prefix(task_id)}/annotated-{name}.jpg"
