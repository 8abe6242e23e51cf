"""Still JPEGs decoded reduced to about the detector's working size, with results in the file's pixels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facequeue.cli.demo import astronaut_bgr
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import get_settings
from facequeue.core.storage import get_storage
from tests.conftest import REPO_ROOT, SHARED_TESTDATA
from workers.detectors.registry import get_detector
from workers.frame_analyzer import FrameAnalyzer
from workers.media.image import decode_image, decode_image_scaled
from workers.pipeline import open_frames
from workers.vision import Face, box_iou, detect_faces, in_file_pixels

# The astronaut (512 px, one face) upscaled 8 times: 4096 px, decoded at 1/2 for the default 1280 working side.
UPSCALE = 8


@pytest.fixture(scope="module")
def big_astronaut(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "astronaut-4096.jpg"
    big = cv2.resize(astronaut_bgr(), None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _regions(paths: list[Path], options: DetectOptions) -> tuple[object, dict[str, list[list[int]]]]:
    """The task path's media info and face regions (what `detect_media` runs, without a task row)."""
    settings = get_settings()
    source = open_frames(paths, options, settings)
    analyzer = FrameAnalyzer("t", options, settings, get_storage(settings), False, ())
    for frame in source.frames:
        analyzer.add(frame)
    return source.media, {key: entry.region for key, entry in analyzer.faces_obj.items()}


def test_a_large_jpeg_is_decoded_reduced_and_answered_in_its_own_pixels(big_astronaut: Path) -> None:
    settings = get_settings()
    (frame,) = open_frames([big_astronaut], DetectOptions(), settings).frames
    assert (frame.image_bgr.shape, frame.scale, frame.size) == ((2048, 2048, 3), 2, (4096, 4096))
    media, regions = _regions([big_astronaut], DetectOptions())
    assert (media.width, media.height) == (4096, 4096)
    # the whole decode's face, within 2 of the file's pixels (measured at 2560 to 6144 px: 0.3-1.8)
    (whole,) = detect_faces(get_detector(), decode_image(big_astronaut, settings), settings.detector_max_side)
    (region,) = regions["0"]
    assert np.abs(np.array(region) - np.array(whole.box)).max() <= 2


@pytest.mark.parametrize(
    "options",
    [
        {"tiling": True},
        {"return_face_url": True},
        {"persons": True},
        {"landmarks": "90"},
        {"detector": "auto"},
    ],
    ids=lambda options: next(iter(options)),
)
def test_options_that_need_the_files_pixels_decode_it_whole(big_astronaut: Path, options: dict) -> None:
    (frame,) = open_frames([big_astronaut], DetectOptions(**options), get_settings()).frames
    assert (frame.image_bgr.shape, frame.scale) == ((4096, 4096, 3), 1)


def test_max_side_sets_the_working_side(big_astronaut: Path) -> None:
    (frame,) = open_frames([big_astronaut], DetectOptions(max_side=640), get_settings()).frames
    assert (frame.image_bgr.shape, frame.scale) == ((1024, 1024, 3), 4)


def test_faces_map_back_clipped_to_the_file() -> None:
    # a 1001 px wide file decoded at 1/2 is 501 wide: its last decoded column reaches file pixel 1002
    face = Face((480.0, 10.0, 21.0, 20.0), np.array([[490.0, 20.0]] * 5), 0.9)
    (mapped,) = in_file_pixels([face], 2, 1001, 800)
    assert mapped.box == (960.0, 20.0, 41.0, 40.0)
    assert mapped.landmarks[0].tolist() == [980.0, 40.0]


def _photos_reduced_at(working_side: int) -> list[Path]:
    if not SHARED_TESTDATA.is_dir():
        return []
    photos = sorted(SHARED_TESTDATA.glob("**/*.jpg"))
    return [path for path in photos if max(cv2.imread(str(path)).shape[:2]) >= 2 * working_side]


@pytest.mark.testdata
@pytest.mark.parametrize("photo", _photos_reduced_at(640), ids=lambda path: path.name)
def test_reduced_decode_finds_the_faces_of_the_whole_decode(photo: Path) -> None:
    """At max_side 640 these photos are decoded at 1/2 (at the default 1280 none of them is reduced: the largest is
    2500 px). Measured: every face found again, boxes overlapping the whole decode's by IoU 0.96-1.0, moved by at
    most 0-4 file pixels (11 on one face, 1.8% of its size), as the detector's input differs by 0.5 grey levels."""
    settings = get_settings()
    whole = detect_faces(get_detector(), decode_image(photo, settings), 640)
    reduced = decode_image_scaled(photo, settings, 640)
    assert reduced.scale == 2
    found = detect_faces(get_detector(), reduced.image_bgr, 640)
    mapped = in_file_pixels(found, reduced.scale, reduced.width, reduced.height)
    assert len(mapped) == len(whole)
    overlap = box_iou(np.array([face.box for face in whole]), np.array([face.box for face in mapped]))
    assert (overlap.max(axis=1) >= 0.95).all(), overlap.max(axis=1)


def test_memory_per_task_for_a_jpeg_claiming_8000x8000() -> None:
    """docs/architecture.md's "memory per task": a worker's peak above its warm state, measured in a fresh process."""
    peaks = {}
    for detector in ("local", "auto"):  # auto without an upstream is YuNet on the whole decode (as before)
        run = subprocess.run(
            [sys.executable, "-m", "tests.memory_per_task", detector],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        peaks[detector] = float(run.stdout.split()[-2])
    assert peaks["local"] < 100 < 400 < peaks["auto"], peaks
