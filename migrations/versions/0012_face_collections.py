"""face collections: a tenant's named sets of faces, each face's 128-d identity embedding in a pgvector column with
an HNSW index (cosine); and the embeddings of a searched task's faces, kept with the task. Needs the `vector`
extension, which is created here.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

from db.migrate import require_pgvector

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    require_pgvector(op.get_bind())
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "face_collections",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(64), nullable=True),
        sa.Column("collection_id", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("face_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "uq_face_collections_tenant_collection",
        "face_collections",
        [sa.text("coalesce(tenant_id, '')"), "collection_id"],
        unique=True,
    )
    op.create_table(
        "collection_faces",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "collection_pk", sa.BigInteger(), sa.ForeignKey("face_collections.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("embedding", Vector(128), nullable=False),
        sa.Column("detect_task_id", sa.String(32), nullable=True),
        sa.Column("frame", sa.String(16), nullable=False),
        sa.Column("face_index", sa.Integer(), nullable=False),
        sa.Column("region", postgresql.JSONB(), nullable=False),
        sa.Column("crop_key", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_collection_faces_embedding",
        "collection_faces",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_collection_faces_collection_id", "collection_faces", ["collection_pk", "id"])
    op.create_index("ix_collection_faces_collection_external", "collection_faces", ["collection_pk", "external_id"])
    op.create_table(
        "task_face_embeddings",
        sa.Column("task_id", sa.String(32), sa.ForeignKey("detect_tasks.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("frame", sa.String(16), primary_key=True),
        sa.Column("face_index", sa.Integer(), primary_key=True),
        sa.Column("embedding", Vector(128), nullable=False),
        sa.Column("region", postgresql.JSONB(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("task_face_embeddings")
    op.drop_table("collection_faces")
    op.drop_table("face_collections")
