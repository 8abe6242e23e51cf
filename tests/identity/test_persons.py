"""analyze_frames (seed 003) on real faces: no de-duplication in one image, merging across several."""

from __future__ import annotations

import numpy as np

from tests.identity.support import Head, detect, scene
from workers.identity.embedder import FaceEmbedding, get_embedder
from workers.identity.persons import FoundAppearance, FoundPerson, StillFrames, corners
from workers.vision import Face


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image_bgr: np.ndarray, face: Face) -> FaceEmbedding:
        self.calls += 1
        return get_embedder().embed(image_bgr, face)


def _analyze(images: list[np.ndarray], timestamps: list[float]) -> tuple[list[FoundPerson], int]:
    embed = CountingEmbedder()
    stills = StillFrames(embed if len(images) > 1 else None)
    for frame_idx, (image, timestamp) in enumerate(zip(images, timestamps, strict=True)):
        stills.add(frame_idx, timestamp, image, detect(image))
    return stills.persons(), embed.calls


def test_one_image_gives_every_face_its_own_person_without_embedding() -> None:
    # Mirror images embed as one person, yet in a single image each face is a person of its own.
    image = scene([Head("astronaut", 350, 100, mirrored=True), Head("astronaut", 40, 100)])
    persons, embedded = _analyze([image], [0.0])

    assert embedded == 0
    left, right = detect(image)
    assert [(p.person_id, p.index, p.bbox) for p in persons] == [
        ("person_0", 0, corners(left.box)),
        ("person_1", 1, corners(right.box)),
    ]
    for person, face in zip(persons, (left, right), strict=True):
        assert person.appearances == [FoundAppearance(0, 0.0, corners(face.box))]
        assert person.first_seen == person.last_seen == 0.0
        assert person.confidence == face.score and 0.0 < person.confidence <= 1.0
        assert person.face.face.box == face.box
        assert all(isinstance(v, int) for v in person.bbox)


def test_several_images_merge_each_person_across_them() -> None:
    images = [
        scene([Head("astronaut", 40, 100), Head("cameraman", 400, 100)]),
        scene([Head("cameraman", 60, 40, height=250), Head("astronaut", 420, 100, height=120)]),
        scene([Head("astronaut", 250, 20, height=300)]),
    ]
    persons, embedded = _analyze(images, [0.0, 1.5, 3.0])

    assert embedded == 5  # every face: across images nothing but identity says who is who
    astronaut, cameraman = persons
    assert (astronaut.person_id, astronaut.index, cameraman.person_id, cameraman.index) == (
        "person_0",
        0,
        "person_1",
        1,
    )
    assert [(a.frame_idx, a.timestamp) for a in astronaut.appearances] == [(0, 0.0), (1, 1.5), (2, 3.0)]
    assert [(a.frame_idx, a.timestamp) for a in cameraman.appearances] == [(0, 0.0), (1, 1.5)]
    assert (astronaut.first_seen, astronaut.last_seen, cameraman.first_seen, cameraman.last_seen) == (0, 3, 0, 1.5)
    assert astronaut.bbox == astronaut.appearances[0].bbox
    assert astronaut.face.frame_idx == 2 and cameraman.face.frame_idx == 1  # the biggest view, for the crop


def test_look_alikes_in_one_image_stay_apart_across_images() -> None:
    pair = scene([Head("astronaut", 40, 100), Head("astronaut", 400, 100, mirrored=True)])
    persons, _ = _analyze([pair, pair], [0.0, 1.0])
    assert [[a.frame_idx for a in p.appearances] for p in persons] == [[0, 1], [0, 1]]
    assert persons[0].bbox[0] < persons[1].bbox[0]


def test_no_faces_no_persons() -> None:
    assert _analyze([scene([]), scene([])], [0.0, 1.0]) == ([], 0)
