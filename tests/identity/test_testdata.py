"""Identity on the real photos and clips in ../shared/testdata (skipped in a fresh clone without it)."""

from __future__ import annotations

import csv
from itertools import combinations

import pytest

from facequeue.core.settings import get_settings
from tests.conftest import SHARED_TESTDATA
from tests.identity.support import VideoTracking, detect, sampled_detections, track_frames
from workers.identity.embedder import get_embedder
from workers.identity.persons import StillFrames
from workers.media.image import decode_image

pytestmark = pytest.mark.testdata

VIDEOS = SHARED_TESTDATA / "videos"
# Every clip of one person in shared/testdata/videos (named, not globbed: in CI a missing clip must fail)
SINGLE_FACE_CLIPS = [
    "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
    *(f"liveportrait_{name}.mp4" for name in ("d3", "d6", "d12", "d18", "d19", "d20", "s18", "s32")),
]
# The two sources label one woman twice: deepface's person 00 is the facenet-pytorch set's
# Angelina Jolie (checked by eye: img5.jpg against angelina_jolie/1.jpg).
SAME_LABEL = {"deepface_person_00": "angelina_jolie"}


def _labelled_photos() -> list[tuple[str, str]]:
    """(file, identity) of every photo of one labelled person; group photos and videos are left out."""
    with (SHARED_TESTDATA / "identity_labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return [
        (row["file"], SAME_LABEL.get(row["identity"], row["identity"]))
        for row in rows
        if row["identity"]
        and ";" not in row["identity"]  # several people in one file
        and not row["identity"].endswith("_faces")  # multiface.jpg: a group, not one person
        and not row["file"].startswith("videos/")
    ]


def _area(bbox: tuple[int, int, int, int]) -> int:
    x1, y1, x2, y2 = bbox
    return (x2 - x1) * (y2 - y1)


def _pairwise_precision_recall(truth: list[str], found: list[str]) -> tuple[float, float]:
    together = [(truth[i] == truth[j], found[i] == found[j]) for i, j in combinations(range(len(truth)), 2)]
    true_pos = sum(same and merged for same, merged in together)
    return true_pos / sum(merged for _, merged in together), true_pos / sum(same for same, _ in together)


def test_identity_sets_cluster_into_their_people() -> None:
    photos = _labelled_photos()
    stills = StillFrames(get_embedder().embed)
    for frame_idx, (file, _) in enumerate(photos):
        image = decode_image(SHARED_TESTDATA / file, get_settings())
        stills.add(frame_idx, float(frame_idx), image, detect(image))
    persons = stills.persons()

    # each photo's person is its largest face (a few photos also show someone small in the background)
    sized = sorted((_area(a.bbox), a.frame_idx, person.person_id) for person in persons for a in person.appearances)
    person_of_photo = {frame_idx: person_id for _, frame_idx, person_id in sized}  # the largest comes last
    found = [person_of_photo[i] for i in range(len(photos))]
    precision, recall = _pairwise_precision_recall([identity for _, identity in photos], found)
    print(
        f"{len(photos)} photos of {len({i for _, i in photos})} people -> {len(persons)} persons; "
        f"pairwise precision {precision:.3f}, recall {recall:.3f}"
    )
    assert precision >= 0.95 and recall >= 0.95  # measured 1.000 and 1.000 (107 photos, 22 people)


def _track_clip(name: str, samples: int) -> VideoTracking:
    return track_frames(sampled_detections(VIDEOS / name, samples), get_embedder().embed)


@pytest.mark.parametrize("name", SINGLE_FACE_CLIPS)
def test_a_single_face_clip_is_one_person(name: str) -> None:
    tracking = _track_clip(name, 15)
    assert len(tracking.persons) == 1, [(p.person_id, [a.frame_idx for a in p.appearances]) for p in tracking.persons]
    assert tracking.embeddings < tracking.detections / 3  # measured 2-4 of 15-16


def test_hamilton_clip_finds_its_people_across_cuts() -> None:
    """Five shots at 20 samples, checked by eye: A (frames 0-13) singer on stage and pianist; B (27-41)
    pianist in profile close-up, a dark face behind; C (55-68) four dark audience faces; D (82-206)
    the singer again, medium shot; E (220-261) seven audience faces including the Obamas.

    Distinct people: 14, if no dark face of B or C is one of E's. Measured: 15 persons, as the
    pianist's tiny frontal face and his profile close-up (not identifiable) cannot be joined.
    """
    tracking = _track_clip("face_recognition_short_hamilton_clip.mp4", 20)
    frames = {frame.frame_idx: frame for frame in tracking.frames}
    persons = {person.person_id: person for person in tracking.persons}
    print(f"hamilton: {len(persons)} persons, {tracking.embeddings} embeddings of {tracking.detections} faces")

    assert 13 <= len(persons) <= 15
    assert all(frames[index].cut for index in (27, 55, 82, 220))  # the first sample of shots B to E
    # the singer, tiny on stage in shot A (the right face of frame 0), is the man of shot D
    singer = persons[tracking.person_of_track[frames[0].track_ids[1]]]
    assert {a.frame_idx for a in singer.appearances} == {0, 13} | {index for index in frames if 82 <= index <= 206}
    # shot E: seven different people, each followed through the shot
    audience = [tracking.person_of_track[track] for track in frames[220].track_ids]
    assert len(set(audience)) == 7
    assert set(frames[233].track_ids) == set(frames[220].track_ids)
    assert tracking.embeddings < tracking.detections / 2
