from __future__ import annotations

import io
import struct
import tempfile
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facequeue.core.errors import ErrorCode, TaskError
from workers.media.image import decode_image, decode_image_scaled

RED_BGR = [0, 0, 255]
WHITE_BGR = [255, 255, 255]


def _encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


def _decode_bytes(data: bytes, settings) -> np.ndarray:
    """``decode_image`` of ``data`` stored in a file, as the worker stores every input before decoding it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image"
        path.write_bytes(data)
        return decode_image(path, settings)


def _decode_error(data: bytes, settings) -> TaskError:
    with pytest.raises(TaskError) as caught:
        _decode_bytes(data, settings)
    return caught.value


def _png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header announcing a huge image, followed by almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_decodes_file_to_bgr_uint8(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "red.png"
    path.write_bytes(_encode(Image.new("RGB", (30, 20), (255, 0, 0)), "PNG"))
    image = decode_image(path, make_settings())
    assert image.shape == (20, 30, 3)
    assert image.dtype == np.uint8
    assert image.flags.c_contiguous
    assert image[0, 0].tolist() == RED_BGR


def test_exif_orientation_is_applied(make_settings) -> None:
    # 40 wide, 20 high, a red block in the stored top-left corner; orientation 6 = "rotate 90° clockwise to show".
    stored = Image.new("RGB", (40, 20), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))
    exif = stored.getexif()
    exif[0x0112] = 6
    image = _decode_bytes(_encode(stored, "JPEG", exif=exif.tobytes(), quality=95), make_settings())
    assert image.shape == (40, 20, 3)
    top_right, top_left = image[2, -3].astype(int), image[2, 2].astype(int)
    assert top_right[2] > 200 and top_right[0] < 60, "the stored top-left corner ends up top-right"
    assert top_left.min() > 200


def test_transparency_is_composited_on_white(make_settings) -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 5, 10))
    image = _decode_bytes(_encode(rgba, "PNG"), make_settings())
    assert image[5, 1].tolist() == RED_BGR
    assert image[5, 8].tolist() == WHITE_BGR


def test_sixteen_bit_grayscale_is_scaled_not_clipped(make_settings) -> None:
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    image = _decode_bytes(_encode(Image.fromarray(values), "PNG"), make_settings())
    assert image[0, :, 0].tolist() == [0, 100, 128, 255]
    assert (image[..., 0] == image[..., 2]).all()


@pytest.mark.parametrize(
    ("image", "expected_bgr"),
    [
        (Image.new("L", (4, 4), 77), [77, 77, 77]),
        (Image.new("1", (4, 4), 1), WHITE_BGR),
        (Image.new("LA", (4, 4), (0, 0)), WHITE_BGR),
        (Image.new("RGB", (4, 4), (255, 0, 0)).convert("P"), RED_BGR),
        (Image.new("CMYK", (4, 4), (0, 0, 0, 0)), WHITE_BGR),
    ],
    ids=["L", "1", "LA", "P", "CMYK"],
)
def test_every_mode_becomes_bgr(make_settings, image: Image.Image, expected_bgr: list[int]) -> None:
    format = "JPEG" if image.mode == "CMYK" else "PNG"
    decoded = _decode_bytes(_encode(image, format), make_settings())
    assert decoded.shape == (4, 4, 3)
    assert np.abs(decoded[2, 2].astype(int) - expected_bgr).max() <= 2


def test_palette_transparency_is_composited_on_white(make_settings) -> None:
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([255, 0, 0] * 256)
    image = _decode_bytes(_encode(palette, "PNG", transparency=0), make_settings())
    assert image[1, 1].tolist() == WHITE_BGR


def test_truncated_jpeg_is_corrupt(make_settings) -> None:
    data = _encode(Image.effect_noise((256, 256), 80).convert("RGB"), "JPEG")
    error = _decode_error(data[: len(data) * 2 // 3], make_settings())
    assert error.code == ErrorCode.CORRUPT_MEDIA
    assert "JPEG data is truncated or corrupt" in error.detail


def test_garbage_is_corrupt(make_settings) -> None:
    error = _decode_error(b"\xff\xd8\xff" + b"\x13" * 500, make_settings())
    assert error.code == ErrorCode.CORRUPT_MEDIA


def test_empty_file_is_corrupt(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(TaskError) as caught:
        decode_image(path, make_settings())
    assert (caught.value.code, caught.value.detail) == (ErrorCode.CORRUPT_MEDIA, "empty file")


def test_pixel_limit_is_checked_before_decoding(make_settings) -> None:
    error = _decode_error(_png_claiming_size(4000, 3000), make_settings(max_image_pixels=10_000_000))
    assert error.code == ErrorCode.MEDIA_LIMIT_EXCEEDED
    assert error.detail == "image is 4000x3000 = 12000000 pixels, the limit is 10000000"


def test_decompression_bomb_beyond_pillows_own_limit_is_refused(make_settings) -> None:
    error = _decode_error(_png_claiming_size(100_000, 100_000), make_settings())
    assert error.code == ErrorCode.MEDIA_LIMIT_EXCEEDED
    assert "10000000000 pixels" in error.detail


# --- JPEGs decoded straight at the working size ---------------------------------------------------------------


def _jpeg_claiming_size(width: int, height: int) -> bytes:
    """A 16x16 JPEG whose header says ``width`` x ``height``: its scan ends long before, and libjpeg fills in
    the rest (the few-hundred-byte file of the issue's probe)."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (90, 120, 200)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_claiming_8000x8000_is_decoded_at_the_working_size(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "claims-8000.jpg"
    path.write_bytes(_jpeg_claiming_size(8000, 8000))
    assert path.stat().st_size < 1000
    tracemalloc.start()
    try:
        decoded = decode_image_scaled(path, make_settings(), working_side=1280)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 1/4 is the smallest reduction still 1280 wide; whole, the array alone would be 8000 * 8000 * 3 = 192 MB.
    assert (decoded.image_bgr.shape, decoded.scale, decoded.width, decoded.height) == ((2000, 2000, 3), 4, 8000, 8000)
    assert peak < 2 * decoded.image_bgr.nbytes + (1 << 20)
    assert decode_image_scaled(path, make_settings(), working_side=640).image_bgr.shape == (1000, 1000, 3)


@pytest.mark.parametrize(("orientation", "upright_size"), [(1, (4000, 3008)), (6, (3008, 4000))])
def test_reduced_jpeg_pixels_map_back_to_file_pixels(
    tmp_path: Path, make_settings, orientation: int, upright_size: tuple[int, int]
) -> None:
    # A black block on block (and 4:2:0 macroblock) boundaries of the 1/4 scale: exactly 1/4 of it, decoded.
    stored = Image.new("RGB", (4000, 3008), (255, 255, 255))
    stored.paste((0, 0, 0), (1600, 800, 2400, 1600))
    exif = stored.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "block.jpg"
    path.write_bytes(_encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    decoded = decode_image_scaled(path, make_settings(), working_side=1000)
    full = decode_image(path, make_settings())
    assert (decoded.scale, (decoded.width, decoded.height)) == (4, upright_size)
    assert full.shape[1::-1] == upright_size
    rows, cols = np.nonzero(decoded.image_bgr.max(axis=2) < 128)
    full_rows, full_cols = np.nonzero(full.max(axis=2) < 128)
    box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert [side * decoded.scale for side in box] == [
        full_cols.min(),
        full_rows.min(),
        full_cols.max() + 1,
        full_rows.max() + 1,
    ]


def test_only_jpegs_larger_than_twice_the_working_side_are_reduced(tmp_path: Path, make_settings) -> None:
    png, jpeg = tmp_path / "large.png", tmp_path / "small.jpg"
    png.write_bytes(_encode(Image.new("RGB", (3000, 2000), (255, 0, 0)), "PNG"))
    jpeg.write_bytes(_encode(Image.new("RGB", (1500, 1000), (255, 0, 0)), "JPEG"))
    assert decode_image_scaled(png, make_settings(), working_side=640).image_bgr.shape == (2000, 3000, 3)
    assert decode_image_scaled(jpeg, make_settings(), working_side=1000).scale == 1
    assert decode_image_scaled(jpeg, make_settings(), working_side=750).image_bgr.shape == (500, 750, 3)
