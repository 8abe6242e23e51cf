"""Tables, targets and plots of one benchmark run, printed and appended to BENCHMARKS.md.

Plots are written twice: full size under bench/out/ (scratch, gitignored) and as smaller copies under
bench/plots/ that BENCHMARKS.md links to, so the record in the repository keeps its figures.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

SCRATCH_DPI = 150
RECORD_DPI = 80  # the committed copies: readable, a few tens of KB


@dataclass
class Table:
    header: list[str]
    rows: list[list[object]]
    caption: str = ""

    def markdown(self) -> str:
        lines = [f"| {' | '.join(self.header)} |", f"|{'---|' * len(self.header)}"]
        lines += [f"| {' | '.join(_cell(value) for value in row)} |" for row in self.rows]
        return "\n".join(([f"*{self.caption}*", ""] if self.caption else []) + lines)


@dataclass
class Target:
    """One target of the issue: what was asked, what was measured, and what bounds it when missed."""

    goal: str
    measured: str
    met: bool | None  # None: could not be measured in this run
    bound: str = ""

    def markdown(self) -> str:
        verdict = {True: "met", False: "**MISSED**", None: "not measured"}[self.met]
        bound = f" — {self.bound}" if self.bound and self.met is not True else ""
        return f"- {self.goal}: {verdict} ({self.measured}){bound}"


@dataclass
class Section:
    key: str  # file-name stem of its plots, e.g. "service"
    title: str
    command: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)  # plot name -> figure


class Report:
    """Where a run writes: ``root``/BENCHMARKS.md, ``root``/bench/out/ and ``root``/bench/plots/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.markdown_path = root / "BENCHMARKS.md"
        self.scratch_dir = root / "bench" / "out"
        self.record_dir = root / "bench" / "plots"

    def publish(self, section: Section) -> str:
        """Print the section, save its plots, append it to BENCHMARKS.md; returns the markdown appended."""
        stamp = datetime.now(UTC)
        images = [self._save(section.key, name, figure, stamp) for name, figure in section.figures.items()]
        text = _section_markdown(section, stamp, images)
        print(text, flush=True)
        if not self.markdown_path.exists():
            self.markdown_path.write_text("# Benchmarks\n\nAppended by `python -m bench`; newest last.\n")
        with self.markdown_path.open("a") as handle:
            handle.write("\n" + text + "\n")
        return text

    def _save(self, key: str, name: str, figure: Figure, stamp: datetime) -> str:
        filename = f"{key}-{name}-{stamp:%Y%m%d-%H%M%S}.png"
        for folder, dpi in ((self.scratch_dir, SCRATCH_DPI), (self.record_dir, RECORD_DPI)):
            folder.mkdir(parents=True, exist_ok=True)
            figure.savefig(folder / filename, dpi=dpi, bbox_inches="tight")
        plt.close(figure)
        return os.path.relpath(self.record_dir / filename, self.root)


def machine_line() -> str:
    import cv2

    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {sys.version.split()[0]}, "
        f"OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads)"
    )


def _section_markdown(section: Section, stamp: datetime, images: list[str]) -> str:
    parts = [
        f"## {stamp:%Y-%m-%d %H:%M} UTC — {section.title}",
        f"Reproduce: `{section.command}`  \nMachine: {machine_line()}",
        *(table.markdown() for table in section.tables),
    ]
    if section.targets:
        parts.append("Targets:\n" + "\n".join(target.markdown() for target in section.targets))
    if section.notes:
        parts.append("Notes:\n" + "\n".join(f"- {note}" for note in section.notes))
    parts += [f"![{Path(image).stem}]({image})" for image in images]
    return "\n\n".join(parts)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
