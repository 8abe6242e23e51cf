"""Issue 10, weakness 7: the signing key and the SQLite file (it holds webhook secrets) were created
world-readable. A fresh embedded data directory, made the way `facequeue migrate` and the API make it."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from db.engine import build_engine, ensure_embedded_database
from db.migrate import upgrade_to_head
from facequeue.settings import Settings
from facequeue.storage import signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_signing_key_and_database_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data", database_url=None, signing_secret=None)
    ensure_embedded_database(settings)  # as `facequeue migrate` does, before alembic's SQLite opens the file
    upgrade_to_head(settings.resolved_database_url)
    engine = build_engine(settings)
    with engine.begin() as connection:  # a write, so SQLite makes its -wal and -shm files
        connection.execute(text("CREATE TABLE probe (id INTEGER)"))
        wal_files = [settings.data_dir / f"facequeue.db{suffix}" for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in wal_files)
        assert [mode(path) for path in wal_files] == [0o600, 0o600]
    engine.dispose()
    signing_key(settings)
    assert mode(settings.data_dir) == 0o700
    assert mode(settings.data_dir / "signing.key") == 0o600
    assert mode(settings.embedded_database_path) == 0o600
    assert sorted(path.name for path in settings.data_dir.iterdir() if not path.name.startswith("facequeue.db")) == [
        "signing.key"  # no temporary key file left behind
    ]
