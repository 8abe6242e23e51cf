"""Apply Alembic migrations programmatically (used by `facequeue migrate` and `serve`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


class PgvectorMissing(RuntimeError):
    """The database cannot hold face collections' vectors; `facequeue migrate` prints the message."""


def require_pgvector(connection: Connection) -> None:
    if connection.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first() is None:
        raise PgvectorMissing(
            "this Postgres has no pgvector extension, which face collections need: install it (your Postgres's "
            "pgvector package, or an image such as pgvector/pgvector:pg16; RDS, Cloud SQL, Azure and Supabase offer "
            "it), then run `facequeue migrate` again. The embedded default (no FACEQUEUE_DATABASE_URL) has it."
        )
