"""Link faces across sampled video frames into tracks, and tracks into persons.

Samples can be seconds apart, so a face may move far between two of them, and shots may cut.
Each frame's faces are matched to tracks in three steps:

1. Position: a face whose box overlaps (IoU >= ``min_iou``) exactly one track of the previous
   sample, where that track last was or where its motion predicts it, while that track overlaps
   no other face, continues it without being embedded, unless the colours in the face box changed
   by more than ``face_change``. Not after a cut: position means nothing there.
2. Identity: every other face is embedded and assigned (Hungarian, maximising cosine + IoU, with
   tracks of the previous sample preferred) to a track not yet continued in this frame, including
   tracks lost long ago, so a person who returns after a cut or a missed detection gets their old
   track back. A pair counts when its cosine is >= ``same_person``; when either embedding is not
   identifiable (too dark, blurred or not a face: `FaceEmbedding.identifiable`), only overlap can
   pair them, and never after a cut.
3. A face still unassigned starts a new track.

A *cut* is a sample whose colour histogram differs from the previous sample's by more than
``cut_distance`` (Bhattacharyya), or where most of the previous sample's faces (at least two)
overlap nothing.

Embeddings: a track (`track.Track`) keeps ONE representative embedding, the mean of the few faces embedded for
it (its *views*; only the identifiable ones count when it has any). A face is embedded only when
a track starts or restarts, when position is ambiguous, after a cut, when a track's face has grown
``reembed_gain`` times better (by `persons.face_quality`) than any embedded for it, and when the
track has grown ``refresh_factor`` times longer since its last view. `FaceTracker.embeddings`
counts the calls.

Persons: tracks are merged by `persons.group_by_identity`. A track never identifiable and seen in
fewer than ``min_unidentifiable_samples`` samples is no person: that is how detector false
positives look (its faces keep their track ids in the frames).

Output per frame (`FrameTracks`): the track id of each face, in input order, and ``removed``: the
faces of the PREVIOUS sampled frame whose track is not present in this frame, each as its
``[x, y, w, h]`` int region in that previous frame (the shape of seed 000's ``region``), in that
frame's face order. The first frame's ``removed`` is ``[]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from workers.identity.colours import box_pixels, colour_distance, colour_signature
from workers.identity.embedder import FaceEmbedding, cosine
from workers.identity.persons import (
    SAME_PERSON_COSINE,
    EmbedFn,
    FoundPerson,
    Sighting,
    build_persons,
    face_quality,
    first_appearance_key,
    group_by_identity,
)
from workers.identity.track import Track
from workers.results import region
from workers.vision import Face, box_iou

# Measured on shared/testdata/videos at 20 samples per clip: the hamilton clip's four cuts score
# 0.27-0.47; within a shot samples score 0.01-0.28 (the crowd clip's camera motion gives the top).
# A false cut only costs embeddings, a missed one can hand a track to a new face: err low.
CUT_DISTANCE = 0.25
# The same histogram of the face box, between a track's consecutive sightings: 95% <= 0.25 and
# 99% <= 0.33 (348 sightings, 20 samples per clip); between two different people in one frame 5%
# <= 0.31. Above this an overlap is checked by embedding: a new person may stand where one stood.
FACE_CHANGE = 0.3
MIN_IOU = 0.2
REEMBED_GAIN = 2.0
# One view can be a poor likeness: in the hamilton clip the singer's first medium-shot face (a wide
# grin) has cosine 0.29 with his earlier long shot, his other medium-shot faces 0.40-0.59 and
# their mean 0.63. So a track also takes a new view when it has grown this many times longer
# since its last one: views at sightings 1, 4, 16, ..., a handful even for a long track.
REFRESH_FACTOR = 4
MIN_UNIDENTIFIABLE_SAMPLES = 2
_NO_MATCH = -1e9
_CONTINUITY_BONUS = 1.0  # above any cosine difference


@dataclass(frozen=True, eq=False)
class FrameDetections:
    frame_idx: int
    timestamp: float
    image_bgr: np.ndarray = field(repr=False)  # needed only while this frame is current
    faces: list[Face]


@dataclass(frozen=True)
class FrameTracks:
    frame_idx: int
    timestamp: float
    track_ids: list[int]  # one per face, in input order
    removed: list[list[int]]  # [x, y, w, h] in the previous sample of faces whose track is absent here
    cut: bool


class FaceTracker:
    """Feed sampled frames in order with `update`; read `persons` at the end."""

    def __init__(
        self,
        embed: EmbedFn,
        *,
        same_person: float = SAME_PERSON_COSINE,
        min_iou: float = MIN_IOU,
        cut_distance: float = CUT_DISTANCE,
        face_change: float = FACE_CHANGE,
        reembed_gain: float = REEMBED_GAIN,
        refresh_factor: int = REFRESH_FACTOR,
        min_unidentifiable_samples: int = MIN_UNIDENTIFIABLE_SAMPLES,
    ) -> None:
        self._embed_fn = embed
        self.same_person = same_person
        self.min_iou = min_iou
        self.cut_distance = cut_distance
        self.face_change = face_change
        self.reembed_gain = reembed_gain
        self.refresh_factor = refresh_factor
        self.min_unidentifiable_samples = min_unidentifiable_samples
        self.embeddings = 0
        self.detections = 0
        self._tracks: list[Track] = []
        self._previous: list[tuple[Track, Sighting]] = []  # the previous sample's faces, in its order
        self._previous_frame_idx: int | None = None
        self._previous_signature: np.ndarray | None = None

    def update(self, frame: FrameDetections) -> FrameTracks:
        self.detections += len(frame.faces)
        signature = colour_signature(frame.image_bgr)
        colours = [colour_signature(box_pixels(frame.image_bgr, face.box)) for face in frame.faces]
        active = [track for track, _ in self._previous]
        overlap = self._overlap(frame, active)
        cut = self._is_cut(signature, overlap)
        if cut:  # the previous sample's positions say nothing about this shot
            active, overlap = [], overlap[:, :0]
        assigned = {
            row: track
            for row, track in _sole_overlaps(overlap, active).items()
            if colour_distance(track.colours, colours[row]) <= self.face_change  # else someone else may stand there
        }
        embeddings = {i: self._embed(frame, i) for i in range(len(frame.faces)) if i not in assigned}
        assigned |= self._match_by_identity(embeddings, overlap, active, assigned)
        track_ids = [
            self._record(frame, i, colours[i], assigned.get(i), embeddings.get(i), cut) for i in range(len(frame.faces))
        ]
        present = set(track_ids)
        removed = [region(sighting.face) for track, sighting in self._previous if track.id not in present]
        self._previous = [(self._tracks[tid], self._tracks[tid].sightings[-1]) for tid in track_ids]
        self._previous_frame_idx = frame.frame_idx
        self._previous_signature = signature
        return FrameTracks(frame.frame_idx, frame.timestamp, track_ids, removed, cut)

    def persons(self) -> tuple[list[FoundPerson], dict[int, str]]:
        """Tracks of one identity merged into persons; and which person each track became."""
        tracks = sorted(
            (track for track in self._tracks if self._is_person(track)),
            key=lambda track: first_appearance_key(track.sightings[0]),
        )
        frames = [{sighting.frame_idx for sighting in track.sightings} for track in tracks]
        groups = group_by_identity([track.embedding for track in tracks], frames, self.same_person)
        persons = build_persons([[s for i in group for s in tracks[i].sightings] for group in groups])
        person_of_track = {
            tracks[i].id: person.person_id for group, person in zip(groups, persons, strict=True) for i in group
        }
        return persons, person_of_track

    def _is_person(self, track: Track) -> bool:
        return track.embedding.identifiable or len(track.sightings) >= self.min_unidentifiable_samples

    def _overlap(self, frame: FrameDetections, active: list[Track]) -> np.ndarray:
        """IoU of each face (rows) with each track of the previous sample (columns), 0 below ``min_iou``."""
        overlap = np.zeros((len(frame.faces), len(active)))
        faces = np.array([face.box for face in frame.faces])
        for col, track in enumerate(active):
            overlap[:, col] = box_iou(faces, np.array(track.boxes_to_match(frame.frame_idx))).max(axis=1)
        overlap[overlap < self.min_iou] = 0.0
        return overlap

    def _is_cut(self, signature: np.ndarray, overlap: np.ndarray) -> bool:
        if self._previous_signature is None:
            return False
        distance = colour_distance(self._previous_signature, signature)
        lost, previous = int(np.sum(~overlap.any(axis=0))), overlap.shape[1]
        return distance > self.cut_distance or (previous >= 2 and lost * 2 > previous)

    def _match_by_identity(
        self,
        embeddings: dict[int, FaceEmbedding],
        overlap: np.ndarray,
        active: list[Track],
        assigned: dict[int, Track],
    ) -> dict[int, Track]:
        taken = {track.id for track in assigned.values()}
        candidates = [track for track in self._tracks if track.id not in taken]
        rows = list(embeddings)
        if not rows or not candidates:
            return {}
        column_of_active = {track.id: col for col, track in enumerate(active)}
        track_embeddings = [track.embedding for track in candidates]
        score = np.full((len(rows), len(candidates)), _NO_MATCH)
        for r, face_index in enumerate(rows):
            for c, track in enumerate(candidates):
                col = column_of_active.get(track.id)
                position = None if col is None else float(overlap[face_index, col])
                score[r, c] = self._pair_score(embeddings[face_index], track_embeddings[c], position)
        matched_rows, matched_cols = linear_sum_assignment(score, maximize=True)
        return {rows[r]: candidates[c] for r, c in zip(matched_rows, matched_cols, strict=True) if score[r, c] > 0}

    def _pair_score(self, face: FaceEmbedding, track: FaceEmbedding, position: float | None) -> float:
        """How well a face continues a track; ``position`` is the IoU, None for a track not in the previous sample.

        Within a shot a track of the previous sample is the likelier owner of a matching face than
        an older one: otherwise a person could hop to an older track of their own and be reported
        as removed while still in view.
        """
        continuing = 0.0 if position is None else _CONTINUITY_BONUS + position
        if face.identifiable and track.identifiable:
            similarity = cosine(face.vector, track.vector)
            return similarity + continuing if similarity >= self.same_person else _NO_MATCH
        return continuing if position else _NO_MATCH

    def _record(
        self,
        frame: FrameDetections,
        index: int,
        colours: np.ndarray,
        track: Track | None,
        embedding: FaceEmbedding | None,
        cut: bool,
    ) -> int:
        face = frame.faces[index]
        sighting = Sighting(frame.frame_idx, frame.timestamp, face)
        if track is None:
            track = Track(len(self._tracks), [sighting], [embedding], face_quality(face), colours)
            self._tracks.append(track)
            return track.id
        previous = track.sightings[-1]
        # Velocity is real motion only between consecutive samples of one shot.
        moved = not cut and previous.frame_idx == self._previous_frame_idx
        track.continue_with(sighting, colours, previous if moved else None)
        if embedding is None and self._wants_new_view(track, face):
            embedding = self._embed(frame, index)
        if embedding is not None:
            track.add_view(embedding, face)
        return track.id

    def _wants_new_view(self, track: Track, face: Face) -> bool:
        """A markedly better face, or a track grown ``refresh_factor`` times longer since its last view."""
        return (
            face_quality(face) >= self.reembed_gain * track.tried_quality
            or len(track.sightings) >= self.refresh_factor * track.embedded_at
        )

    def _embed(self, frame: FrameDetections, index: int) -> FaceEmbedding:
        self.embeddings += 1
        return self._embed_fn(frame.image_bgr, frame.faces[index])


def _sole_overlaps(overlap: np.ndarray, active: list[Track]) -> dict[int, Track]:
    """Face -> track where each is the other's only overlap: position alone decides, no embedding needed."""
    sole_in_row = (overlap > 0).sum(axis=1) == 1
    sole_in_column = (overlap > 0).sum(axis=0) == 1
    return {
        row: active[col]
        for row, col in zip(*np.nonzero(overlap), strict=True)
        if sole_in_row[row] and sole_in_column[col]
    }
