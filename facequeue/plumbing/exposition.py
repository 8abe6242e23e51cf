"""How a process exposes its metrics: alone, or as one of several that share a multiprocess folder.

A worker's prefork pool processes, and the API run with `--workers N`, are separate processes, each
with its own counters. prometheus-client's multiprocess mode makes every process write its values to
files in one folder (PROMETHEUS_MULTIPROC_DIR) and lets one scrape add them up; the `worker`, `api` and
`serve` commands choose a fresh private folder before anything imports prometheus_client, which reads the
variable once, on import (`serve` one folder for its API and its worker, so the API's /metrics shows both).
So every function here imports prometheus_client only when called.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def use_private_multiprocess_dir(command: str) -> Path:
    """Put this process and its children in multiprocess mode, with an empty folder of their own that
    goes away when this process exits. Must run before prometheus_client is imported."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("the metrics folder must be chosen before prometheus_client is imported")
    prefix = f"facequeue-{command}-metrics-"
    _remove_stale_folders(Path(tempfile.gettempdir()), prefix)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    os.environ[MULTIPROC_ENV] = str(path)
    atexit.register(_remove_folder, path, os.getpid())
    return path


def _remove_stale_folders(root: Path, prefix: str) -> None:
    """Folders of earlier runs that were killed (no exit hook ran): their maker is gone, or has this
    process's pid, as a restarted container's PID 1 does."""
    for folder in root.glob(f"{prefix}*"):
        pid = folder.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _remove_folder(path: Path, owner: int) -> None:
    if os.getpid() == owner:  # forked children inherit atexit handlers: only the folder's maker removes it
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def scrape_registry(*collectors: Any):
    """A registry for one exposition: this process's metrics (or, in multiprocess mode, every process's
    files), plus `collectors` (values read at scrape time)."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder is not None:
        registry.register(_LiveProcessFiles(folder, MultiProcessCollector(None, str(folder))))
    else:
        registry.register(_ProcessRegistry(REGISTRY))
    for collector in collectors:
        registry.register(collector)
    return registry


class _ProcessRegistry:
    """This process's default registry, as one collector of another registry."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class _LiveProcessFiles:
    """The multiprocess files, read after dropping the live-mode gauges of processes that are gone.

    That is prometheus-client's `mark_process_dead`, applied to each process whose files are there but
    which no longer exists: a pool process that exited, was recycled or was killed (no hook runs then).
    Counters and histograms of dead processes stay, so totals never go down.
    """

    def __init__(self, folder: Path, files: Any) -> None:
        self.folder = folder
        self.files = files

    def collect(self):
        from prometheus_client.multiprocess import mark_process_dead

        for pid in _pids_with_live_gauges(self.folder):
            if not _alive(pid):
                mark_process_dead(pid, str(self.folder))
        return self.files.collect()


def _pids_with_live_gauges(folder: Path) -> set[int]:
    return {int(match.group(1)) for name in os.listdir(folder) if (match := _LIVE_GAUGE_FILE.match(name))}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
