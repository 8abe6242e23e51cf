"""Import of an embedded data dir's SQLite file (`<data_dir>/facequeue.db`, made by the releases that kept everything
in SQLite) into Postgres: every row of every table the models define, ids and all. The only module that reads
SQLite.

The file is opened read-only and read in one snapshot, as SQLite holds it: timestamps naive (in UTC, whatever the
machine's zone), JSON as text, which goes into JSONB as it is (SQL NULL stays NULL, JSON null stays null). What
Postgres can't hold (NUL, lone surrogates) becomes U+FFFD. The models' column types write every value.
Everything is written in one Postgres transaction: an import that fails leaves nothing behind. A row whose primary
key Postgres already holds is left as it is there, so importing the same file again adds nothing.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Integer,
    Table,
    Text,
    TypeDecorator,
    bindparam,
    cast,
    create_engine,
    inspect,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.pool import NullPool
from sqlalchemy.types import JSON

from db.models import Base

# The database revision of the last release with the SQLite form: its schema is the one read here. A file at an
# older revision is brought there by that release's `facequeue migrate`, not by this module.
LEGACY_REVISION = "0011"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
CHUNK_ROWS = 500  # rows per INSERT: a large task table is never held in memory at once
UNIQUE_VIOLATION = "23505"  # Postgres SQLSTATE
# What SQLite keeps and Postgres refuses: NUL in text (a webhook endpoint's reply can hold one), and NUL or a lone
# surrogate escaped in JSON. Each becomes U+FFFD, as the undecodable bytes of a reply already do.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_IN_JSON = re.compile(r"\\u(0000|d[89a-f])", re.IGNORECASE)

# How summary() names each table's rows (singular, plural), in the order it lists them.
LABELS: dict[str, tuple[str, str]] = {
    "detect_tasks": ("task", "tasks"),
    "tenants": ("tenant", "tenants"),
    "api_keys": ("API key", "API keys"),
    "service_flags": ("service flag", "service flags"),
    "batches": ("batch", "batches"),
    "webhook_events": ("webhook event", "webhook events"),
    "webhook_deliveries": ("webhook delivery", "webhook deliveries"),
    "disabled_webhook_endpoints": ("disabled webhook endpoint", "disabled webhook endpoints"),
}


class LegacyImportError(Exception):
    """The file can't be imported; the message says why and what to do, for the person running the import."""


@dataclass(frozen=True)
class LegacyImport:
    """What one import did, per table of the file (those the models define)."""

    source: Path
    copied: Mapping[str, int]  # table -> rows inserted by this import
    already_there: Mapping[str, int]  # table -> rows whose id Postgres held already (left as they were)

    @property
    def total_copied(self) -> int:
        return sum(self.copied.values())

    @property
    def total_already_there(self) -> int:
        return sum(self.already_there.values())

    def summary(self) -> str:
        """One line, e.g. `imported from /d/facequeue.db: 3 tasks, 2 tenants, 3 API keys (0 rows already there)`."""
        tables = sorted(
            (name for name in self.copied if self.copied[name] + self.already_there.get(name, 0)),
            key=lambda name: (list(LABELS).index(name) if name in LABELS else len(LABELS), name),
        )
        if not tables:
            return f"nothing to import from {self.source}: it holds no rows"
        if self.total_copied == 0:
            there = ", ".join(_count(self.already_there[name], name) for name in tables)
            return f"nothing new in {self.source}: its {there} were already there"
        copied = ", ".join(_count(self.copied[name], name) for name in tables)
        already = self.total_already_there
        return f"imported from {self.source}: {copied} ({already} {'row' if already == 1 else 'rows'} already there)"


def _labels(table: str) -> tuple[str, str]:
    return LABELS.get(table, (f"{table} row", f"{table} rows"))


def _count(number: int, table: str) -> str:
    singular, plural = _labels(table)
    return f"{number} {singular if number == 1 else plural}"


def import_legacy_sqlite(sqlite_path: Path, engine: Engine) -> LegacyImport:
    """Copy every row of the SQLite file into the database `engine` points at (migrated to head by the caller).

    Raises LegacyImportError when the file is missing, is not SQLite, is at another revision than LEGACY_REVISION,
    or holds a row that clashes with a different one already in Postgres (then nothing is imported)."""
    path = Path(sqlite_path).absolute()
    _check_is_sqlite(path)
    source = _read_only_engine(path)
    try:
        with source.connect() as legacy:
            legacy.exec_driver_sql("BEGIN")  # one snapshot of every table, should the old service still be running
            columns = _legacy_columns(legacy, path)
            copied: dict[str, int] = {}
            already: dict[str, int] = {}
            with engine.begin() as target:
                for table in Base.metadata.sorted_tables:  # parents before children (foreign keys)
                    present = [column for column in table.columns if column.name in columns.get(table.name, ())]
                    if present:
                        copied[table.name], already[table.name] = _copy_table(legacy, target, table, present, path)
                _move_sequences(target)
    except DBAPIError as error:
        if isinstance(error.orig, sqlite3.Error):
            raise LegacyImportError(
                f"{path} could not be read as a facequeue SQLite database: it is damaged, or not that file"
            ) from error
        raise
    finally:
        source.dispose()
    return LegacyImport(source=path, copied=copied, already_there=already)


def _check_is_sqlite(path: Path) -> None:
    if not path.is_file():
        raise LegacyImportError(f"{path}: no such file (the SQLite database is facequeue.db in the old data dir)")
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as error:
        raise LegacyImportError(f"{path} can't be read: {error.strerror}") from error
    if header != SQLITE_HEADER:
        raise LegacyImportError(f"{path} is not a SQLite database file, so it can't be imported")


def _read_only_engine(path: Path) -> Engine:
    # mode=ro: SQLite never writes the file (in WAL mode it may add the empty -wal and -shm files it reads through)
    uri = f"{path.as_uri()}?mode=ro"
    return create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False), poolclass=NullPool
    )


def _legacy_columns(legacy: Connection, path: Path) -> dict[str, set[str]]:
    """Each table's columns in the file, once its revision is the one this module reads."""
    inspector = inspect(legacy)
    tables = set(inspector.get_table_names())
    if "alembic_version" not in tables:
        raise LegacyImportError(
            f"{path} is a SQLite file without a facequeue database revision: it is not a facequeue.db, or its "
            "release never migrated it; run that release's `facequeue migrate` on its data dir first"
        )
    revisions = [row[0] for row in legacy.execute(text("SELECT version_num FROM alembic_version"))]
    if revisions != [LEGACY_REVISION]:
        found = ", ".join(revisions) or "none"
        raise LegacyImportError(
            f"{path} is at database revision {found}, and only revision {LEGACY_REVISION} (the last release with "
            "SQLite) can be imported: run `facequeue migrate` of that release on its data dir first (with "
            "FACEQUEUE_DATABASE_URL unset), then import again"
        )
    return {name: {column["name"] for column in inspector.get_columns(name)} for name in tables}


def _copy_table(
    legacy: Connection, target: Connection, table: Table, present: list[Column], path: Path
) -> tuple[int, int]:
    """Insert the file's rows of `table`, those whose primary key is new; returns (inserted, already there)."""
    kinds = {column.name: _kind(column) for column in present}
    query = select(*(_as_stored(column, kinds[column.name]) for column in present)).order_by(*table.primary_key.columns)
    key = list(table.primary_key.columns)
    statement = (
        pg_insert(table)
        .values(
            {name: cast(bindparam(f"json_{name}", type_=Text), JSONB) for name, kind in kinds.items() if kind is JSON}
        )
        .on_conflict_do_nothing(index_elements=key)
        .returning(*key)
    )
    inserted = read = 0
    for chunk in legacy.execute(query).partitions(CHUNK_ROWS):
        rows = [
            {
                (f"json_{name}" if kinds[name] is JSON else name): _storable(value, kinds[name])
                for name, value in row._mapping.items()
            }
            for row in chunk
        ]
        try:
            inserted += len(target.execute(statement, rows).all())
        except IntegrityError as error:
            raise LegacyImportError(_clash_message(error, table.name, path)) from error
        except DataError as error:
            raise LegacyImportError(
                f"nothing was imported from {path}: one of its {_labels(table.name)[1]} holds a value the "
                "database refused"
            ) from error
        read += len(rows)
    return inserted, read - inserted


def _kind(column: Column) -> type[JSON] | type[DateTime] | None:
    if isinstance(column.type, JSON):
        return JSON
    stored = column.type.impl_instance if isinstance(column.type, TypeDecorator) else column.type
    return DateTime if isinstance(stored, DateTime) else None


def _as_stored(column: Column, kind: type[JSON] | type[DateTime] | None) -> ColumnElement:
    """The column as the SQLite file holds it. JSON: its text, which Postgres casts to JSONB (the models' type would
    turn SQL NULL into JSON null). Timestamps: naive (the models' type would read them as the machine's local time)."""
    if kind is JSON:
        return type_coerce(column, Text).label(column.name)
    if kind is DateTime:
        return type_coerce(column, DateTime()).label(column.name)
    return column


def _storable(value: object, kind: type[JSON] | type[DateTime] | None) -> object:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC)  # the old release wrote UTC and SQLite dropped the zone
    if not isinstance(value, str):
        return value
    if kind is JSON:
        return json.dumps(_without_unstorable(json.loads(value))) if UNSTORABLE_IN_JSON.search(value) else value
    return UNSTORABLE.sub("\ufffd", value)


def _without_unstorable(value: object) -> object:
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_unstorable(item) for item in value]
    if isinstance(value, dict):
        return {_without_unstorable(key): _without_unstorable(item) for key, item in value.items()}
    return value


def _clash_message(error: IntegrityError, table: str, path: Path) -> str:
    singular, plural = _labels(table)
    if getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION:
        return (
            f"nothing was imported from {path}: one of its {plural} has the same name or key as a different "
            f"{singular} already in the database; import it into a new, empty database"
        )
    return f"nothing was imported from {path}: one of its {plural} does not fit the rows already in the database"


def _move_sequences(target: Connection) -> None:
    """Serial ids (webhook deliveries, disabled endpoints) continue after the largest one now in each table."""
    quote = target.dialect.identifier_preparer
    for table in Base.metadata.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) != 1 or not isinstance(key[0].type, Integer):
            continue
        sequence = target.scalar(
            text("SELECT pg_get_serial_sequence(:table, :column)"), {"table": table.name, "column": key[0].name}
        )
        if sequence is None:
            continue
        target.execute(
            text(
                f"SELECT setval(CAST(:sequence AS regclass), GREATEST(MAX({quote.quote(key[0].name)}), "
                f"COALESCE(pg_sequence_last_value(CAST(:sequence AS regclass)), 0))) "
                f"FROM {quote.format_table(table)} HAVING MAX({quote.quote(key[0].name)}) IS NOT NULL"
            ),
            {"sequence": sequence},
        )
