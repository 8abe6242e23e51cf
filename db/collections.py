"""Face collections and their faces: one tenant's rows only, and nearest-neighbour search on the faces' embeddings
(pgvector, HNSW, cosine distance)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db import batch_persons
from db.batch_persons import ItemPerson
from db.face_models import CollectionFace, FaceCollection, TaskFaceEmbedding
from db.models import utcnow
from facequeue.core.schemas import FaceMatch

# pgvector's HNSW scan returns at most hnsw.ef_search rows: a search for more raises it. The floor is above
# pgvector's 40: at 1,000,000 faces, 40 found 0.75 of the exact top 10, 100 found 0.92 at a p99 of 19.8 ms
# (`python -m bench search`, 2 cores)
DEFAULT_EF_SEARCH = 100


@dataclass(frozen=True)
class NewFace:
    """A face to index: collection_faces' columns but its collection's and the insert time."""

    id: str  # the face_id
    external_id: str | None
    embedding: np.ndarray
    detect_task_id: str | None
    frame: str
    face_index: int
    region: list[int]
    crop_key: str | None


@dataclass(frozen=True)
class KeptEmbedding:
    """A task's face embedding, kept with the task (task_face_embeddings' columns but the task's)."""

    frame: str
    face_index: int
    embedding: np.ndarray
    region: list[int]


@dataclass(frozen=True)
class RecognitionWrites:
    """What a run with the index or search option, or in a batch with persons, writes with its final status
    (workers/run_control.py)."""

    task_id: str
    collection_pk: int | None  # where `faces` go: the index option's collection
    faces: list[NewFace]
    kept: list[KeptEmbedding]
    batch_id: str | None  # the batch whose persons `persons` join
    persons: list[ItemPerson]


def write_recognition(session: Session, writes: RecognitionWrites) -> None:
    if writes.collection_pk is not None:
        add_faces(session, writes.collection_pk, writes.faces)
    if writes.kept:
        # vars(), not asdict(): asdict deep-copies every embedding on the way
        session.execute(insert(TaskFaceEmbedding), [vars(kept) | {"task_id": writes.task_id} for kept in writes.kept])
    if writes.batch_id is not None:
        batch_persons.join(session, writes.batch_id, writes.task_id, writes.persons)


def kept_embeddings(
    session: Session, task_id: str, faces: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], TaskFaceEmbedding]:
    """The task's kept embeddings of `faces` ((frame, index) pairs) that it has."""
    rows = session.scalars(
        select(TaskFaceEmbedding).where(
            TaskFaceEmbedding.task_id == task_id,
            tuple_(TaskFaceEmbedding.frame, TaskFaceEmbedding.face_index).in_(list(faces)),
        )
    ).all()
    return {(row.frame, row.face_index): row for row in rows}


@dataclass(frozen=True)
class Neighbour:
    face_id: str
    external_id: str | None
    similarity: float  # the cosine, 1 - pgvector's cosine distance


def _owned(tenant_id: str | None, collection_id: str):
    return (func.coalesce(FaceCollection.tenant_id, "") == (tenant_id or "")) & (
        FaceCollection.collection_id == collection_id
    )


def create_collection(
    session: Session, tenant_id: str | None, collection_id: str, description: str | None
) -> FaceCollection | None:
    """The new collection; None when the tenant already has one by that id."""
    created = session.execute(
        insert(FaceCollection)
        .values(
            tenant_id=tenant_id, collection_id=collection_id, description=description, face_count=0, created_at=utcnow()
        )
        .on_conflict_do_nothing()
        .returning(FaceCollection.id)
    ).scalar_one_or_none()
    return None if created is None else session.get(FaceCollection, created)


def get_collection(session: Session, tenant_id: str | None, collection_id: str) -> FaceCollection | None:
    return session.scalars(select(FaceCollection).where(_owned(tenant_id, collection_id))).one_or_none()


def list_collections(
    session: Session, tenant_id: str | None, after: str | None, limit: int
) -> Sequence[FaceCollection]:
    """A page of the tenant's collections by id, those after `after`."""
    query = select(FaceCollection).where(func.coalesce(FaceCollection.tenant_id, "") == (tenant_id or ""))
    if after is not None:
        query = query.where(FaceCollection.collection_id > after)
    return session.scalars(query.order_by(FaceCollection.collection_id).limit(limit)).all()


def delete_collection(session: Session, tenant_id: str | None, collection_id: str) -> int | None:
    """Delete the collection and its faces (the foreign key cascades); its primary key, for its crops' prefix."""
    return session.execute(
        delete(FaceCollection).where(_owned(tenant_id, collection_id)).returning(FaceCollection.id)
    ).scalar_one_or_none()


def add_faces(session: Session, collection_pk: int, faces: Sequence[NewFace]) -> int:
    """Insert the faces, if the collection still exists; how many went in."""
    counted = session.execute(
        update(FaceCollection)
        .where(FaceCollection.id == collection_pk)
        .values(face_count=FaceCollection.face_count + len(faces))
        .returning(FaceCollection.id)
    ).scalar_one_or_none()
    if counted is None or not faces:
        return 0
    now = utcnow()
    session.execute(
        insert(CollectionFace), [vars(face) | {"collection_pk": collection_pk, "created_at": now} for face in faces]
    )
    return len(faces)


def list_faces(
    session: Session, collection_pk: int, external_id: str | None, after: str | None, limit: int
) -> Sequence[CollectionFace]:
    query = select(CollectionFace).where(CollectionFace.collection_pk == collection_pk)
    if external_id is not None:
        query = query.where(CollectionFace.external_id == external_id)
    if after is not None:
        query = query.where(CollectionFace.id > after)
    return session.scalars(query.order_by(CollectionFace.id).limit(limit)).all()


def get_face(session: Session, collection_pk: int, face_id: str) -> CollectionFace | None:
    return session.scalars(
        select(CollectionFace).where(CollectionFace.collection_pk == collection_pk, CollectionFace.id == face_id)
    ).one_or_none()


def delete_faces(session: Session, collection_pk: int, face_ids: Sequence[str]) -> list[str | None]:
    """Delete the faces; the crop keys of those that were there."""
    crop_keys = list(
        session.scalars(
            delete(CollectionFace)
            .where(CollectionFace.collection_pk == collection_pk, CollectionFace.id.in_(face_ids))
            .returning(CollectionFace.crop_key)
        ).all()
    )
    if crop_keys:
        session.execute(
            update(FaceCollection)
            .where(FaceCollection.id == collection_pk)
            .values(face_count=FaceCollection.face_count - len(crop_keys))
        )
    return crop_keys


def search(
    session: Session,
    collection_pk: int,
    embedding: np.ndarray,
    threshold: float,
    max_matches: int,
    exclude: str | None = None,
) -> list[FaceMatch]:
    """The collection's faces at least `threshold` similar to `embedding`, best first; a negative cosine reads 0."""
    return [
        FaceMatch(face_id=n.face_id, external_id=n.external_id, similarity=round(max(n.similarity, 0.0), 4))
        for n in nearest_faces(session, collection_pk, embedding, max_matches, exclude)
        if n.similarity >= threshold
    ]


def nearest_faces(
    session: Session, collection_pk: int, embedding: np.ndarray, limit: int, exclude: str | None = None
) -> list[Neighbour]:
    """The collection's `limit` faces nearest `embedding` (approximate, through the HNSW index), nearest first.

    The index is shared by every collection: pgvector's iterative scan keeps reading it until `limit` rows of
    this collection are found, in exact distance order (strict_order)."""
    session.execute(
        text("SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', 'strict_order', true)"),
        {"ef": str(max(DEFAULT_EF_SEARCH, limit + (exclude is not None)))},
    )
    distance = CollectionFace.embedding.cosine_distance(embedding)
    query = select(CollectionFace.id, CollectionFace.external_id, distance).where(
        CollectionFace.collection_pk == collection_pk
    )
    if exclude is not None:
        query = query.where(CollectionFace.id != exclude)
    rows = session.execute(query.order_by(distance).limit(limit)).all()
    return [Neighbour(face_id, external_id, 1.0 - float(found)) for face_id, external_id, found in rows]
