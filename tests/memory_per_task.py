"""Memory one image task adds to a warm worker process: `python -m tests.memory_per_task local|auto`.

Runs what a CPU slot runs for a task (decode, detect, result) on the issue's probe, a 632-byte JPEG whose header
says 8000x8000, after a 1280 px warm-up task (the detector's buffers at the working size are then part of the
warm process). `auto` (no upstream configured, so YuNet) needs the file's pixels and decodes it whole, as every
task did before JPEGs were decoded reduced. Prints the peak RSS above the warm process (Linux: VmHWM, reset).
"""

from __future__ import annotations

import io
import struct
import sys
import tempfile
from pathlib import Path

import cv2
from PIL import Image

from facequeue.cli.demo import astronaut_bgr
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import get_settings
from facequeue.core.storage import get_storage
from workers.frame_analyzer import FrameAnalyzer
from workers.pipeline import open_frames


def _status_mib(field: str) -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
    return int(line.split()[1]) / 1024


def _jpeg_claiming(width: int, height: int) -> bytes:
    encoded = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 200)).save(encoded, "JPEG")
    data = bytearray(encoded.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def main(detector: str) -> None:
    settings = get_settings()
    options = DetectOptions(detector=detector)
    folder = Path(tempfile.mkdtemp())
    warm_up, probe = folder / "warm-up.jpg", folder / "claims-8000.jpg"
    cv2.imwrite(str(warm_up), cv2.resize(astronaut_bgr(), (1280, 1280)))
    probe.write_bytes(_jpeg_claiming(8000, 8000))

    def run(path: Path) -> None:
        source = open_frames([path], options, settings)
        analyzer = FrameAnalyzer("memory", options, settings, get_storage(settings), False, ())
        for frame in source.frames:
            analyzer.add(frame)
        analyzer.result(source.media)

    run(warm_up)
    warm = _status_mib("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from now
    run(probe)
    print(
        f"{detector}: {probe.stat().st_size}-byte JPEG claiming 8000x8000, peak above the warm process: "
        f"{_status_mib('VmHWM:') - warm:.0f} MiB"
    )


if __name__ == "__main__":
    main(sys.argv[1])
