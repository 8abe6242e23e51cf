"""The tables holding faces' identity embeddings (pgvector): face collections and their faces, the embeddings kept
with a task, and a batch's persons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, UTCDateTime, url_safe_id, utcnow

EMBEDDING_DIMENSIONS = 128  # SFace's identity embedding (workers/identity/embedder.py)


class FaceCollection(Base):
    """A tenant's named set of faces to search (POST /v1/collections)."""

    __tablename__ = "face_collections"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64))
    collection_id: Mapped[str] = mapped_column(String(255))  # the tenant's name for it
    description: Mapped[str | None] = mapped_column(Text)
    face_count: Mapped[int] = mapped_column(Integer, default=0)  # kept by the writes, so GET never counts rows
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        Index("uq_face_collections_tenant_collection", func.coalesce(tenant_id, ""), collection_id, unique=True),
    )


class CollectionFace(Base):
    """One indexed face: its identity embedding, who it is (external_id), and where it was found."""

    __tablename__ = "collection_faces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: url_safe_id(15))  # the face_id
    collection_pk: Mapped[int] = mapped_column(ForeignKey("face_collections.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(255))
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS))  # L2-normalised
    detect_task_id: Mapped[str | None] = mapped_column(String(32))  # the task that indexed it (kept after its purge)
    frame: Mapped[str] = mapped_column(String(16))  # its faces_obj key in that task
    face_index: Mapped[int] = mapped_column(Integer)
    region: Mapped[list[int]] = mapped_column(JSONB)  # [x, y, w, h] in that frame
    crop_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        # cosine distance, HNSW at pgvector's defaults (docs/collections.md has the measured trade-offs)
        Index(
            "ix_collection_faces_embedding",
            embedding,
            postgresql_using="hnsw",
            postgresql_with={"m": 16, "ef_construction": 64},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
        Index("ix_collection_faces_collection_id", "collection_pk", "id"),  # listing pages
        Index("ix_collection_faces_collection_external", "collection_pk", "external_id"),
    )


class TaskFaceEmbedding(Base):
    """A face's embedding from a task run with the index or search option, kept while the task's result is: its
    faces can be indexed later with no model run (POST /v1/collections/{id}/faces)."""

    __tablename__ = "task_face_embeddings"

    task_id: Mapped[str] = mapped_column(ForeignKey("detect_tasks.id", ondelete="CASCADE"), primary_key=True)
    frame: Mapped[str] = mapped_column(String(16), primary_key=True)
    face_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS))
    region: Mapped[list[int]] = mapped_column(JSONB)


class BatchItemPerson(Base):
    """A person found in one item of a batch submitted with `persons: true`, with the batch-wide person it is
    (db/batch_persons.py assigns it; null until then)."""

    __tablename__ = "batch_item_persons"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(ForeignKey("detect_tasks.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(String(32))  # the item's own person_N
    embedding: Mapped[Any] = mapped_column(Vector(EMBEDDING_DIMENSIONS))  # the mean of its faces', L2-normalised
    time_ranges: Mapped[list[list[float]]] = mapped_column(JSONB)  # [first, last] seconds of each run of samples
    batch_person_id: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_batch_item_persons_batch", "batch_id", "batch_person_id"),
        Index("ix_batch_item_persons_task", "task_id"),  # a task's purge and deletion
    )
