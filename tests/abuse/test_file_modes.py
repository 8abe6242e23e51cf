"""Issue 10, weakness 7: the signing key was created world-readable. A fresh data directory, made the way the
API makes it: the directory 0700, the key 0600, no temporary key file left behind."""

from __future__ import annotations

import stat
from pathlib import Path

from facequeue.core.settings import Settings
from facequeue.core.storage import signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_and_signing_key_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "fresh" / "data", signing_secret=None)
    signing_key(settings)
    assert mode(settings.data_dir) == 0o700
    assert mode(settings.data_dir / "signing.key") == 0o600
    assert [path.name for path in settings.data_dir.iterdir()] == ["signing.key"]
