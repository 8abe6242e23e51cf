"""A task's identity work (the `index` and `search` options, and the persons of a batch submitted with `persons`):
each face's SFace embedding, the quality gate of indexing, the search of a collection's vectors, and each person's
mean embedding. All of it is written with the task's final status, in its transaction (workers/run_control.py), so
a retried or lost run indexes nothing twice."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from db import collections
from db.batch_persons import ItemPerson
from db.collections import KeptEmbedding, NewFace, RecognitionWrites
from db.models import url_safe_id
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.schemas import (
    DetectOptions,
    FaceFrame,
    FaceMatch,
    IndexedFace,
    IndexReport,
    Person,
    PersonMatches,
    UnindexedFace,
)
from facequeue.core.storage import MediaStorage, collection_face_key
from facequeue.plumbing.metrics import COLLECTION_SEARCH
from facequeue.plumbing.sessions import session_scope
from workers.crops import crop_jpeg, expanded_region
from workers.identity.embedder import FaceEmbedding
from workers.identity.persons import EmbedFn
from workers.results import region
from workers.vision import Face, box_iou


@dataclass(frozen=True)
class QualityGate:
    """What a face needs to be indexed at one quality_filter level."""

    min_side: float  # px, the box's shorter side
    min_score: float  # the detector's
    max_turn: float  # the nose's offset from between the eyes, over the eyes' distance: 0 frontal, ~0.5 profile
    min_norm: float  # SFace's raw feature norm: its own quality signal, low for blurred and dark faces


QUALITY_GATES = {
    "low": QualityGate(min_side=20, min_score=0.5, max_turn=1.2, min_norm=6.0),
    "auto": QualityGate(min_side=40, min_score=0.7, max_turn=0.8, min_norm=8.0),
    "high": QualityGate(min_side=64, min_score=0.85, max_turn=0.45, min_norm=10.0),
}


def turn(face: Face) -> float:
    left_eye, right_eye, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    eyes = float(np.linalg.norm(right_eye - left_eye))
    return abs(float(nose[0] - (left_eye[0] + right_eye[0]) / 2)) / max(eyes, 1.0)


def unfit_reason(face: Face, embedding: FaceEmbedding, level: str) -> str | None:
    """Why the face may not be indexed at `level` ("none": never), or None."""
    gate = QUALITY_GATES.get(level)
    if gate is None:
        return None
    if min(face.box[2], face.box[3]) < gate.min_side:
        return "too_small"
    if face.score < gate.min_score:
        return "low_score"
    if turn(face) > gate.max_turn:
        return "extreme_pose"
    if embedding.norm < gate.min_norm:
        return "blurry"
    return None


@dataclass
class Candidate:
    area: float
    face: NewFace


@dataclass(frozen=True)
class EmbeddedFace:
    embedding: FaceEmbedding
    region: list[int]


@dataclass
class FaceRecognition:
    """One task's embeddings: indexed, searched and grouped into its batch's persons once its frames are all seen."""

    task_id: str
    options: DetectOptions
    storage: MediaStorage
    index_pk: int | None
    search_pk: int | None
    persons_batch_id: str | None  # the batch (submitted with persons) whose persons this item's join
    candidates: list[Candidate] = field(default_factory=list)
    unindexed: list[UnindexedFace] = field(default_factory=list)
    faces: dict[str, list[EmbeddedFace]] = field(default_factory=dict)  # each frame's, in the frame's face order
    item_persons: list[ItemPerson] = field(default_factory=list)

    @classmethod
    def for_task(
        cls,
        task_id: str,
        tenant_id: str | None,
        options: DetectOptions,
        storage: MediaStorage,
        persons_batch_id: str | None,
    ) -> FaceRecognition | None:
        if options.index is None and options.search is None and persons_batch_id is None:
            return None
        keys: list[int | None] = [None, None]
        if options.index is not None or options.search is not None:
            with session_scope() as session:
                keys = [_collection_pk(session, tenant_id, wanted) for wanted in (options.index, options.search)]
        return cls(task_id, options, storage, *keys, persons_batch_id)

    def add(self, key: str, image_bgr: np.ndarray, faces: list[Face], embed: EmbedFn) -> None:
        found = [embed(image_bgr, face) for face in faces]
        self.faces[key] = [EmbeddedFace(embedding, region(face)) for face, embedding in zip(faces, found, strict=True)]
        if self.index_pk is None:
            return
        wanted = self.options.index
        for position, (face, embedding) in enumerate(zip(faces, found, strict=True)):
            reason = unfit_reason(face, embedding, wanted.quality_filter)
            if reason is not None:
                self.unindexed.append(UnindexedFace(frame=key, index=position, reason=reason))
                continue
            face_id = url_safe_id(15)
            height, width = image_bgr.shape[:2]
            crop_key = collection_face_key(self.index_pk, face_id)
            self.storage.put_bytes(
                crop_key,
                crop_jpeg(image_bgr, expanded_region(face, self.options.expand_ratio, width, height)),
                "image/jpeg",
            )
            new = NewFace(
                face_id, wanted.external_id, embedding.vector, self.task_id, key, position, region(face), crop_key
            )
            self.candidates.append(Candidate(face.box[2] * face.box[3], new))
        self._keep_largest(wanted.max_faces)

    def _keep_largest(self, max_faces: int) -> None:
        self.candidates.sort(key=lambda candidate: -candidate.area)
        for extra in self.candidates[max_faces:]:
            self.unindexed.append(
                UnindexedFace(frame=extra.face.frame, index=extra.face.face_index, reason="exceeds_max_faces")
            )
            self.storage.delete_keys([extra.face.crop_key])
        del self.candidates[max_faces:]

    def report(self) -> IndexReport | None:
        if self.options.index is None:
            return None
        kept = sorted(self.candidates, key=lambda candidate: (int(candidate.face.frame), candidate.face.face_index))
        return IndexReport(
            collection_id=self.options.index.collection_id,
            external_id=self.options.index.external_id,
            indexed=[IndexedFace(frame=c.face.frame, index=c.face.face_index, face_id=c.face.id) for c in kept],
            unindexed=sorted(self.unindexed, key=lambda face: (int(face.frame), face.index)),
        )

    def keep_persons(self, persons: list[Person], faces_obj: dict[str, FaceFrame]) -> None:
        """The item's persons as its batch's persons get them: each with the mean embedding of its identifiable
        faces (a person with none is left out: nothing says who it is) and the time ranges it appears in."""
        if self.persons_batch_id is None:
            return
        order = {key: position for position, key in enumerate(faces_obj)}
        for person in persons:
            vectors = []
            for appearance in person.appearances:
                key = str(appearance.frame_idx)
                face = _face_at(faces_obj[key].region, appearance.bbox)
                if face is not None and self.faces[key][face].embedding.identifiable:
                    vectors.append(self.faces[key][face].embedding.vector)
            if vectors:
                mean = np.mean(vectors, axis=0)
                self.item_persons.append(
                    ItemPerson(person.person_id, mean / np.linalg.norm(mean), time_ranges(person, order))
                )

    def writes(self) -> RecognitionWrites:
        """The faces to index, every face's embedding to keep with the task (one run with index or search: its
        faces may be indexed later), and its persons for its batch's."""
        searched_or_indexed = self.options.index is not None or self.options.search is not None
        kept = [
            KeptEmbedding(key, position, face.embedding.vector, face.region)
            for key, faces in self.faces.items()
            for position, face in enumerate(faces)
            if searched_or_indexed
        ]
        indexed = [candidate.face for candidate in self.candidates]
        return RecognitionWrites(self.task_id, self.index_pk, indexed, kept, self.persons_batch_id, self.item_persons)

    def discard_crops(self) -> None:
        self.storage.delete_keys([candidate.face.crop_key for candidate in self.candidates])

    def matches(self) -> dict[str, list[list[FaceMatch]]] | None:
        """Each face's matches in the searched collection (the faces this task indexes are not in it yet)."""
        wanted = self.options.search
        if wanted is None:
            return None
        searched = COLLECTION_SEARCH.labels("task")
        with session_scope() as session:
            found: dict[str, list[list[FaceMatch]]] = {}
            for key, faces in self.faces.items():
                found[key] = []
                for face in faces:
                    with searched.time():
                        found[key].append(
                            collections.search(
                                session, self.search_pk, face.embedding.vector, wanted.threshold, wanted.max_matches
                            )
                        )
            return found


def _collection_pk(session, tenant_id: str | None, wanted) -> int | None:
    if wanted is None:
        return None
    found = collections.get_collection(session, tenant_id, wanted.collection_id)
    if found is None:
        raise TaskError(ErrorCode.COLLECTION_NOT_FOUND, f"collection {wanted.collection_id} was deleted")
    return found.id


def person_matches(
    persons: list[Person], faces_obj: dict[str, FaceFrame], matches: dict[str, list[list[FaceMatch]]], limit: int
) -> dict[str, PersonMatches]:
    """Each person's matches, from the matches of the faces it appears as (each collection face at its best
    similarity over the appearances, the best `limit`), and the runs of sampled frames it appears in."""
    order = {key: position for position, key in enumerate(faces_obj)}
    found: dict[str, PersonMatches] = {}
    for person in persons:
        best: dict[str, FaceMatch] = {}
        for appearance in person.appearances:
            key = str(appearance.frame_idx)
            face = _face_at(faces_obj[key].region, appearance.bbox)
            for match in matches[key][face] if face is not None else []:
                if match.face_id not in best or match.similarity > best[match.face_id].similarity:
                    best[match.face_id] = match
        ranked = sorted(best.values(), key=lambda match: -match.similarity)[:limit]
        found[person.person_id] = PersonMatches(matches=ranked, time_ranges=time_ranges(person, order))
    return found


def time_ranges(person: Person, order: dict[str, int]) -> list[list[float]]:
    """[first, last] timestamp of each run of consecutive sampled frames (by `order`) the person appears in."""
    runs: list[list[float]] = []
    previous = None
    for appearance in person.appearances:
        key = str(appearance.frame_idx)
        if previous is not None and order[key] == order[previous] + 1:
            runs[-1][1] = appearance.timestamp
        else:
            runs.append([appearance.timestamp, appearance.timestamp])
        previous = key
    return runs


def _face_at(regions: list[list[int]], corners: list[int]) -> int | None:
    """The frame's face whose region is the appearance's box (x1, y1, x2, y2): the most overlapping one."""
    if not regions:
        return None
    x1, y1, x2, y2 = corners
    overlaps = box_iou(np.array([[x1, y1, x2 - x1, y2 - y1]], float), np.array(regions, float))[0]
    return int(overlaps.argmax()) if overlaps.max() > 0 else None
