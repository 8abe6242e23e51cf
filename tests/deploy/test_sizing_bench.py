"""A smoke run of `python -m bench sizing --quick`: it measures every figure docs/deployment/sizing.md asks for
(the figures themselves come from a full run, never from this one)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the bench extra is not installed (matplotlib)")
pytest.importorskip("psutil", reason="the bench extra is not installed (psutil)")

pytestmark = pytest.mark.integration


def test_sizing_reports_memory_per_process_and_tasks_per_core(services: None, tmp_path: Path) -> None:
    from bench import sizing
    from bench.options import RunOptions

    section = sizing.run(RunOptions(quick=True, output=tmp_path, workdir=tmp_path))
    memory, throughput = section.tables
    assert [row[:2] for row in memory.rows] == [
        ["API server process (uvicorn)", 2],
        ["worker main process (Celery)", 1],
        ["worker pool process", 2],
        ["worker fetch pool process (download threads)", 1],
    ]
    for _, _, rss_mean, rss_max, pss_mean in memory.rows:
        assert 0 < pss_mean <= rss_mean <= rss_max
    assert [row[:3] for row in throughput.rows] == [
        ["image 1280x720, 3 faces", sizing.QUICK["images"], sizing.QUICK["images"]],
        [f"video 720p 5 s, {sizing.VIDEO_FRAMES} frames", sizing.QUICK["videos"], sizing.QUICK["videos"]],
    ]
    for row in throughput.rows:
        assert row[3] > 0 and row[4] > 0  # pool CPU seconds, tasks per core-second
    assert section.command == ".venv/bin/python -m bench sizing --quick --output " + str(tmp_path)
