"""What one `python -m bench` run was asked for, and the command that reproduces a benchmark of it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data import REPO_ROOT


@dataclass(frozen=True)
class RunOptions:
    quick: bool = False
    output: Path = REPO_ROOT
    workdir: Path = Path(".")  # scratch for service data dirs; removed after the run
    cache_dir: Path = REPO_ROOT / "bench" / "out"  # kept between runs (e.g. the built 10-minute clip)
    images: int = 200
    rss_tasks: int = 10_000
    forms: tuple[str, ...] = ("embedded", "distributed")
    faces: int | None = None  # bench search: synthetic faces in the collection (None: its own default)

    def command(self, name: str) -> str:
        """The command line that runs benchmark ``name`` again with these options."""
        parts = [".venv/bin/python -m bench", name]
        if self.quick:
            parts.append("--quick")
        if self.output != REPO_ROOT:
            parts.append(f"--output {self.output}")
        if name == "service" and self.images != DEFAULTS.images:
            parts.append(f"--images {self.images}")
        if name == "api" and self.rss_tasks != DEFAULTS.rss_tasks:
            parts.append(f"--rss-tasks {self.rss_tasks}")
        if name in ("service", "api", "client_wait") and self.forms != DEFAULTS.forms:
            parts.append(f"--forms {','.join(self.forms)}")
        if name == "search" and self.faces is not None:
            parts.append(f"--faces {self.faces}")
        return " ".join(parts)


DEFAULTS = RunOptions()
