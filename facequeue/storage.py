"""Where uploaded media (and later crops) live, shared by the API (writes) and workers (read).

The embedded default and single-host deployments use the local filesystem under the data
directory; a multi-host deployment points `data_dir` at a shared volume.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

from facequeue.settings import Settings


class MediaStorage(Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...

    def local_path(self, key: str) -> Path: ...

    def delete_prefix(self, prefix: str) -> None: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"stored media {key!r} is missing")
        return path

    def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()


def get_storage(settings: Settings) -> MediaStorage:
    return LocalStorage(settings.media_dir)


def upload_key(task_id: str) -> str:
    return f"tasks/{task_id}/upload"


def task_prefix(task_id: str) -> str:
    return f"tasks/{task_id}"
