"""Videos whose every frame shows its own index as a row of black/white bars, so a test can tell
which frame a sampler really returned."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

BITS = 10  # up to 1024 distinct frames
WIDTH, HEIGHT = 160, 120
BAR = WIDTH // BITS

# name -> (file suffix, codec, extra encoder options); all NUMBERED_FRAME_COUNT frames, 160x120, 25 fps.
NUMBERED_FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp4-h264": (".mp4", "libx264", {}),
    "mkv-h264": (".mkv", "libx264", {}),
    "mov-mpeg4": (".mov", "mpeg4", {}),
    "avi-mpeg4": (".avi", "mpeg4", {}),
    "webm-vp8": (".webm", "libvpx", {}),
    "webm-vp9": (".webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"}),
    "gif": (".gif", "gif", {}),
}
NUMBERED_FRAME_COUNT = 64


def numbered_frame(index: int) -> np.ndarray:
    """An RGB frame with bit b of ``index`` drawn as a white bar in column b."""
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(BITS):
        if index >> bit & 1:
            image[:, bit * BAR : (bit + 1) * BAR] = 255
    return image


def frame_number(image: np.ndarray) -> int:
    """Read the index back; bar edges are skipped because lossy codecs blur them."""
    return sum(1 << bit for bit in range(BITS) if image[:, bit * BAR + 3 : (bit + 1) * BAR - 3].mean() > 128)


def write_numbered_video(
    path: Path,
    codec: str,
    frame_count: int,
    *,
    fps: int = 25,
    gop_size: int | None = None,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        if gop_size is not None:
            stream.codec_context.gop_size = gop_size
        for index in range(frame_count):
            frame = av.VideoFrame.from_ndarray(numbered_frame(index), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
