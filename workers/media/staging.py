"""A task's downloads, kept in storage between the fetch stage (I/O pool) and its CPU slot.

They are stored under one key that becomes the task's upload_key, so deleting a final task's upload
(facequeue/lifecycle/retention.py) deletes them too: a single URL's file as it came, frame_urls' files
in one uncompressed tar, in URL order.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path

from facequeue.core.storage import MediaStorage, fetched_key


def store_downloads(task_id: str, paths: Sequence[Path], frames: bool, storage: MediaStorage, workdir: Path) -> str:
    """Store the downloaded files (`frames`: the task's frame_urls, else its one URL); the key they are under."""
    key = fetched_key(task_id)
    if not frames:
        storage.put_file(key, paths[0])
        return key
    bundle = workdir / "frames.tar"
    with tarfile.open(bundle, "w") as tar:
        for position, path in enumerate(paths):
            tar.add(path, arcname=str(position))
    storage.put_file(key, bundle, "application/x-tar")
    return key


def load_downloads(key: str, frame_count: int, storage: MediaStorage, workdir: Path) -> list[Path]:
    """Local files of what `store_downloads` stored, in URL order (`frame_count`: how many frame_urls, 0: one URL).
    FileNotFoundError when they are no longer stored."""
    stored = storage.fetch_to(key, workdir)
    if not frame_count:
        return [stored]
    folder = workdir / "frames"
    with tarfile.open(stored) as tar:
        tar.extractall(folder, filter="data")
    return [folder / str(position) for position in range(frame_count)]
