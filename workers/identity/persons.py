"""Persons: faces of one identity gathered across frames (seed 003's analyze_frames).

Both callers build persons the same way. A *unit* is a set of sightings already known to be one
person with one representative embedding: a single face for still images, a whole track for
video. Units are grouped by identity (`group_by_identity`), and each group becomes a `FoundPerson`
(`build_persons`), which the pipeline stores as the result's `facequeue.core.schemas.Person`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from facequeue.core.settings import Settings
from workers.identity.embedder import FaceEmbedding
from workers.vision import Face

# The default of FACEQUEUE_PERSON_MATCH_THRESHOLD, its one source; the service passes the setting itself.
SAME_PERSON_COSINE: float = Settings.model_fields["person_match_threshold"].default

EmbedFn = Callable[[np.ndarray, Face], FaceEmbedding]


@dataclass(frozen=True)
class Sighting:
    """One face of a person in one frame."""

    frame_idx: int
    timestamp: float
    face: Face


@dataclass(frozen=True)
class FoundAppearance:
    """One frame a found person is seen in, with the face box's corners there."""

    frame_idx: int
    timestamp: float
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2


@dataclass(frozen=True)
class FoundPerson:
    """A person as identity grouping found it, before the pipeline stores its crop."""

    person_id: str  # person_N, numbered in order of first appearance (frame, then left to right)
    index: int  # rank left to right by x of the first appearance
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 of the first appearance
    confidence: float  # detection score of `face`
    appearances: list[FoundAppearance]  # in frame order
    first_seen: float
    last_seen: float
    face: Sighting  # the representative face: crop this one


class StillFrames:
    """Persons in still images fed one at a time (seed 003's analyze_frames).

    One image: every face is its own person (no de-duplication) and nothing is embedded. Several
    images: every face is embedded as it arrives (so images can be dropped) and faces are merged
    across images by cosine >= ``same_person``; faces too dark or blurred to identify stay persons
    of their own. ``embed`` may be None only when a single image will be added.
    """

    def __init__(self, embed: EmbedFn | None, same_person: float = SAME_PERSON_COSINE) -> None:
        self.embed = embed
        self.same_person = same_person
        self.sightings: list[Sighting] = []
        self.embeddings: list[FaceEmbedding] = []
        self.frames = 0

    def add(self, frame_idx: int, timestamp: float, image_bgr: np.ndarray, faces: Iterable[Face]) -> None:
        self.frames += 1
        for face in sorted(faces, key=lambda face: face.box[0]):
            self.sightings.append(Sighting(frame_idx, float(timestamp), face))
            if self.embed is not None:
                self.embeddings.append(self.embed(image_bgr, face))

    def persons(self) -> list[FoundPerson]:
        if self.frames > 1:
            frames = [{sighting.frame_idx} for sighting in self.sightings]
            groups = group_by_identity(self.embeddings, frames, self.same_person)
        else:
            groups = [[i] for i in range(len(self.sightings))]
        return build_persons([[self.sightings[i] for i in group] for group in groups])


def group_by_identity(
    embeddings: Sequence[FaceEmbedding], frames: Sequence[Collection[int]], threshold: float
) -> list[list[int]]:
    """Group units by identity: average-linkage agglomerative clustering on cosine similarity.

    ``embeddings[i]`` is unit i's embedding and ``frames[i]`` the frames it is seen in. The two
    groups with the highest average pairwise similarity merge while that average is
    >= ``threshold``. Never merged: groups seen in a common frame (two faces in one frame are two
    people, even when they look alike: a mirrored copy of a face embeds as the same person), and
    units whose embedding is not identifiable. Average linkage, unlike single linkage, does not
    chain different people together through one odd face.

    Returns lists of unit indices, each sorted, ordered by their first unit.
    """
    count = len(embeddings)
    if count == 0:
        return []
    vectors = np.array([embedding.vector for embedding in embeddings], dtype=np.float64)
    link = vectors @ vectors.T  # sum of pairwise similarities between the members of two groups
    unknown = np.array([not embedding.identifiable for embedding in embeddings])
    conflict = _shares_a_frame(frames) | unknown[:, None] | unknown[None, :]
    size = np.ones(count)
    alive = np.ones(count, dtype=bool)
    members = [[i] for i in range(count)]
    while True:
        average = link / np.outer(size, size)
        average[conflict | ~alive[:, None] | ~alive[None, :]] = -np.inf
        np.fill_diagonal(average, -np.inf)
        i, j = sorted(np.unravel_index(int(np.argmax(average)), average.shape))
        if not average[i, j] >= threshold:
            break
        link[i, :] += link[j, :]
        link[:, i] += link[:, j]
        conflict[i, :] |= conflict[j, :]
        conflict[:, i] |= conflict[:, j]
        size[i] += size[j]
        alive[j] = False
        members[i] += members[j]
    return [sorted(members[i]) for i in np.flatnonzero(alive)]


def build_persons(groups: Sequence[Sequence[Sighting]]) -> list[FoundPerson]:
    """One person per group; ``groups`` come in order of first appearance and groups[i] becomes person_i."""
    firsts = [min(group, key=first_appearance_key) for group in groups]
    left_to_right = sorted(range(len(groups)), key=lambda i: (firsts[i].face.box[0], i))
    index_of = {number: index for index, number in enumerate(left_to_right)}
    return [_person(number, index_of[number], group) for number, group in enumerate(groups)]


def first_appearance_key(sighting: Sighting) -> tuple[int, float]:
    return sighting.frame_idx, sighting.face.box[0]


def face_quality(face: Face) -> float:
    """How well a face serves as a person's crop and embedding: large and confidently (often frontally) detected."""
    return face.score * math.sqrt(face.area)


def corners(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return round(x), round(y), round(x + w), round(y + h)


def _person(number: int, index: int, group: Sequence[Sighting]) -> FoundPerson:
    sightings = sorted(group, key=first_appearance_key)
    best = max(sightings, key=lambda sighting: face_quality(sighting.face))
    timestamps = [sighting.timestamp for sighting in sightings]
    return FoundPerson(
        person_id=f"person_{number}",
        index=index,
        bbox=corners(sightings[0].face.box),
        confidence=best.face.score,
        appearances=[FoundAppearance(s.frame_idx, s.timestamp, corners(s.face.box)) for s in sightings],
        first_seen=min(timestamps),
        last_seen=max(timestamps),
        face=best,
    )


def _shares_a_frame(frames: Sequence[Collection[int]]) -> np.ndarray:
    column = {frame: i for i, frame in enumerate(sorted(set().union(*frames)))}
    seen_in = np.zeros((len(frames), len(column)), dtype=np.int32)
    for unit, unit_frames in enumerate(frames):
        seen_in[unit, [column[frame] for frame in unit_frames]] = 1
    return (seen_in @ seen_in.T) > 0
