from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.media_kinds import kind_from_extension
from workers.media.sniff import SniffedMedia, sniff


def _image_bytes(format: str, frames: int = 1, **save_options: object) -> bytes:
    images = [Image.new("RGB", (16, 16), (index * 40, 0, 0)) for index in range(frames)]
    buffer = io.BytesIO()
    if frames > 1:
        save_options.update(save_all=True, append_images=images[1:], duration=100)
    images[0].save(buffer, format, **save_options)
    return buffer.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("a.jpg", _image_bytes("JPEG"), SniffedMedia("image", "image/jpeg", animated=False)),
        ("a.png", _image_bytes("PNG"), SniffedMedia("image", "image/png", animated=False)),
        ("a.gif", _image_bytes("GIF"), SniffedMedia("image", "image/gif", animated=False)),
        ("a.webp", _image_bytes("WEBP"), SniffedMedia("image", "image/webp", animated=False)),
        ("anim.gif", _image_bytes("GIF", frames=3), SniffedMedia("video", "image/gif", animated=True)),
        ("anim.webp", _image_bytes("WEBP", frames=3), SniffedMedia("video", "image/webp", animated=True)),
        ("anim.png", _image_bytes("PNG", frames=3), SniffedMedia("video", "image/apng", animated=True)),
        # The name lies; the bytes decide.
        ("photo.mp4", _image_bytes("JPEG"), SniffedMedia("image", "image/jpeg", animated=False)),
    ],
)
def test_images_are_recognised_by_content(tmp_path: Path, name: str, data: bytes, expected: SniffedMedia) -> None:
    assert sniff(_write(tmp_path, name, data)) == expected


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("mp4-h264", "video/mp4"),
        ("mov-mpeg4", "video/quicktime"),
        ("webm-vp8", "video/webm"),
        ("mkv-h264", "video/x-matroska"),
        ("avi-mpeg4", "video/x-msvideo"),
    ],
)
def test_videos_are_recognised_by_content(numbered_videos: dict[str, Path], name: str, mime: str) -> None:
    assert sniff(numbered_videos[name]) == SniffedMedia("video", mime, animated=False)


def test_animated_gif_video_counts_as_video(numbered_videos: dict[str, Path]) -> None:
    assert sniff(numbered_videos["gif"]) == SniffedMedia("video", "image/gif", animated=True)


@pytest.mark.parametrize(
    ("name", "data", "detail"),
    [
        ("photo.jpg", b"<!DOCTYPE html><html><body>Not found</body></html>", "text, not an image or video"),
        ("photo.jpg", bytes(range(7, 256)) * 4, "unrecognised bytes"),
        ("doc.jpg", b"%PDF-1.7\n" + b"\0" * 100, "application/pdf is not a supported image or video type"),
    ],
)
def test_other_content_is_unsupported(tmp_path: Path, name: str, data: bytes, detail: str) -> None:
    with pytest.raises(TaskError) as caught:
        sniff(_write(tmp_path, name, data))
    assert caught.value.code == ErrorCode.UNSUPPORTED_MEDIA
    assert detail in caught.value.detail


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as caught:
        sniff(_write(tmp_path, "a.jpg", b""))
    assert caught.value.code == ErrorCode.CORRUPT_MEDIA
    assert caught.value.detail == "empty file"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("https://cdn.example/p/Photo.JPG?width=100#top", "image"),
        ("clip.webm", "video"),
        ("https://cdn.example/v/clip.mov?sig=abc.jpg", "video"),
        ("https://cdn.example/download", None),
        ("archive.tar.gz", None),
    ],
)
def test_extension_hint(name: str, kind: str | None) -> None:
    assert kind_from_extension(name) == kind
