"""The shared real-face test data (../shared/testdata, read in place, never copied) and its ground truth."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
VIDEOS = TESTDATA / "videos"
WIDER_GROUND_TRUTH = TESTDATA / "wider_face_val_sample" / "ground_truth"

WIDER_SETTINGS = ("easy", "medium", "hard")
DLIB_SETTING = "dlib"  # every labelled face of the dlib photos counts

CLIP_1080P = "facenet_pytorch_video.mp4"
CLIPS_720P = ("liveportrait_s18.mp4", "liveportrait_s32.mp4")
# Every clip of one person (testdata/README.md: each must come out as exactly one person).
SINGLE_FACE_CLIPS = (
    "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
    *(f"liveportrait_{name}.mp4" for name in ("d3", "d6", "d12", "d18", "d19", "d20", "s18", "s32")),
)
# The two identity sources label one woman twice (checked by eye in tests/identity/test_testdata.py).
SAME_LABEL = {"deepface_person_00": "angelina_jolie"}


class BenchmarkSkipped(RuntimeError):
    """A benchmark cannot run here (missing data or package); the message says why."""


class TestdataMissing(BenchmarkSkipped):
    pass


@dataclass(frozen=True, eq=False)
class LabelledImage:
    path: Path
    boxes: np.ndarray  # (n, 4) x, y, w, h in pixels
    counted: dict[str, np.ndarray]  # setting -> bool mask of the faces that count in it (others are ignored)
    landmarks68: tuple[np.ndarray | None, ...]  # iBUG 68 points per face (dlib photos only)

    @property
    def is_wider(self) -> bool:
        return "easy" in self.counted


def require_testdata() -> None:
    if not TESTDATA.is_dir():
        raise TestdataMissing(f"this benchmark needs the shared real-face data at {TESTDATA}")


@cache
def labelled_images() -> tuple[LabelledImage, ...]:
    """The 13 images of ground_truth_faces.json: 9 dlib photos, then 4 WIDER FACE val images."""
    require_testdata()
    entries = json.loads((TESTDATA / "ground_truth_faces.json").read_text())
    images = tuple(_labelled(entry) for entry in entries)
    _check_against_official_lists([image for image in images if image.is_wider])
    return images


def _labelled(entry: dict) -> LabelledImage:
    faces = entry["faces"]
    boxes = np.array([face["box_xywh"] for face in faces], dtype=np.float64).reshape(-1, 4)
    if "in_hard" in faces[0]:
        counted = {setting: np.array([face[f"in_{setting}"] for face in faces]) for setting in WIDER_SETTINGS}
    else:
        counted = {DLIB_SETTING: np.ones(len(faces), dtype=bool)}
    landmarks = tuple(
        np.array(face["landmarks68"], dtype=np.float64) if "landmarks68" in face else None for face in faces
    )
    return LabelledImage(TESTDATA / entry["file"], boxes, counted, landmarks)


def _check_against_official_lists(images: list[LabelledImage]) -> None:
    """The JSON's boxes and easy/medium/hard flags must be those of the official WIDER .mat files."""
    from scipy.io import loadmat

    official = loadmat(WIDER_GROUND_TRUTH / "wider_face_val.mat")
    where = {
        str(name[0]): (event, position)
        for event, files in enumerate(official["file_list"][:, 0])
        for position, name in enumerate(files[:, 0])
    }
    lists = {setting: loadmat(WIDER_GROUND_TRUTH / f"wider_{setting}_val.mat")["gt_list"] for setting in WIDER_SETTINGS}
    for image in images:
        event, position = where[image.path.stem]
        boxes = official["face_bbx_list"][event, 0][position, 0]
        if not np.array_equal(boxes, image.boxes):
            raise ValueError(f"{image.path.name}: boxes differ from wider_face_val.mat")
        for setting, gt_list in lists.items():
            keep = np.zeros(len(boxes), dtype=bool)
            keep[gt_list[event, 0][position, 0].ravel().astype(int) - 1] = True  # 1-based in MATLAB
            if not np.array_equal(keep, image.counted[setting]):
                raise ValueError(f"{image.path.name}: {setting} flags differ from wider_{setting}_val.mat")


def labelled_photos() -> list[tuple[Path, str]]:
    """(photo, identity) of every photo of one labelled person: group photos and videos are left out."""
    require_testdata()
    with (TESTDATA / "identity_labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        (TESTDATA / row["file"], SAME_LABEL.get(row["identity"], row["identity"]))
        for row in rows
        if row["identity"]
        and ";" not in row["identity"]  # several people in one file
        and not row["identity"].endswith("_faces")  # multiface.jpg: a group
        and not row["file"].startswith("videos/")
    ]
