"""Both storage backends for real: the local filesystem, and S3 through boto3 against moto's S3 server on 127.0.0.1.

moto's server stands in for S3 (no S3 can be reached from here); boto3 talks to it over real HTTP.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from facequeue.core.settings import Settings
from facequeue.core.storage import LocalStorage, get_storage
from tests.support import free_port


@pytest.fixture(scope="module")
def s3_settings(tmp_path_factory) -> Settings:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("s3"),
        storage_backend="s3",
        s3_bucket="faces",
        s3_prefix="facequeue",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_region="us-east-1",
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    get_storage(settings).client.create_bucket(Bucket="faces")
    yield settings
    server.stop()


def test_s3_put_fetch_link_delete(s3_settings: Settings, tmp_path: Path) -> None:
    storage = get_storage(s3_settings)
    storage.put_bytes("tasks/t1/crops/a.jpg", b"jpeg bytes", "image/jpeg")
    storage.put_bytes("tasks/t1/upload", b"upload bytes")
    storage.put_bytes("tasks/t2/upload", b"other task")
    assert storage.fetch_to("tasks/t1/upload", tmp_path).read_bytes() == b"upload bytes"
    link = storage.url_for("tasks/t1/crops/a.jpg", "http://ignored")
    assert "Signature" in link or "X-Amz-Signature" in link
    response = httpx.get(link)
    assert response.status_code == 200 and response.content == b"jpeg bytes"
    assert response.headers["content-type"] == "image/jpeg"
    storage.delete_prefix("tasks/t1")
    with pytest.raises(FileNotFoundError):
        storage.fetch_to("tasks/t1/upload", tmp_path)
    assert storage.fetch_to("tasks/t2/upload", tmp_path).read_bytes() == b"other task"  # other tasks untouched


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_read_bytes_gives_an_object_or_file_not_found(backend: str, s3_settings: Settings, tmp_path: Path) -> None:
    storage = get_storage(s3_settings) if backend == "s3" else LocalStorage(tmp_path, b"k" * 32, url_ttl=60)
    storage.put_bytes("tasks/t3/previews/frame-0.jpg", b"kept frame", "image/jpeg")
    assert storage.read_bytes("tasks/t3/previews/frame-0.jpg") == b"kept frame"
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("tasks/t3/previews/annotated-contact.jpg")


def test_local_links_are_signed_and_expire(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, b"k" * 32, url_ttl=60)
    storage.put_bytes("tasks/t/crops/x.jpg", b"x")
    link = httpx.URL(storage.url_for("tasks/t/crops/x.jpg", "http://api.example/"))
    assert link.path == "/v1/media/tasks/t/crops/x.jpg"
    expires, signature = int(link.params["expires"]), link.params["sig"]
    assert expires - time.time() == pytest.approx(60, abs=2)
    assert storage.verify("tasks/t/crops/x.jpg", expires, signature)
    assert not storage.verify("tasks/t/crops/y.jpg", expires, signature)  # a signature is per key
    assert not storage.verify("tasks/t/crops/x.jpg", expires + 1, signature)
    assert not storage.verify(
        "tasks/t/crops/x.jpg", int(time.time()) - 1, storage.signature("tasks/t/crops/x.jpg", int(time.time()) - 1)
    )
    with pytest.raises(ValueError, match="escapes"):
        storage.put_bytes("../outside", b"x")


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_tasks_downloads_are_one_object_loaded_back_in_url_order(
    backend: str, s3_settings: Settings, tmp_path: Path
) -> None:
    """What the fetch stage stores for a CPU slot (workers/media/staging.py): one key, the task's upload_key, so
    deleting the upload deletes every download."""
    from workers.media.staging import load_downloads, store_downloads

    storage = get_storage(s3_settings) if backend == "s3" else LocalStorage(tmp_path / "media", b"k" * 32, 60)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    frames = [downloads / name for name in ("z", "a", "m")]  # URL order, not name order
    for position, path in enumerate(frames):
        path.write_bytes(f"frame {position}".encode())
    key = store_downloads("t3", frames, True, storage, downloads)
    assert key == "tasks/t3/fetched"
    loaded = load_downloads(key, 3, storage, tmp_path)
    assert [path.read_bytes() for path in loaded] == [b"frame 0", b"frame 1", b"frame 2"]
    single = downloads / "video"
    single.write_bytes(b"one URL's bytes")
    (loaded_single,) = load_downloads(store_downloads("t4", [single], False, storage, downloads), 0, storage, tmp_path)
    assert loaded_single.read_bytes() == b"one URL's bytes"
    storage.delete_keys([key])
    with pytest.raises(FileNotFoundError):
        load_downloads(key, 3, storage, tmp_path)
