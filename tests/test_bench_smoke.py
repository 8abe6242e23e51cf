"""Smoke runs of every benchmark (`python -m bench NAME --quick`) into a temporary folder.

They check that each benchmark runs and records its section, never a timing: the figures are measured by
running the benchmarks themselves (see BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
from PIL import ImageFile

# The bench extra (matplotlib, psutil; face_recognition for the peer): `make install` has it, other installs may not.
pytest.importorskip("matplotlib", reason="the bench extra is not installed (matplotlib)")
pytest.importorskip("psutil", reason="the bench extra is not installed (psutil)")

from bench.__main__ import main  # noqa: E402

TITLES = {
    "service": "(a) service vs bare model",
    "video": "(b) video sampling",
    "overlap": "overlapping I/O with compute inside a task",
    "peer": "(c) peer: face_recognition",
    "accuracy": "(d) accuracy on ground_truth_faces.json",
    "api": "(e) API: latency, burst drain, worker memory",
    "client_wait": "Client.wait: requests per task for a 10 s video",
    "engine": "vision engine: ONNX Runtime against OpenCV, per model",
    "upload_cost": "API CPU per MB of upload",
    "search": "face collections: HNSW search at scale",
    "task_cost": "task cost: CPU ms per task by component",
}
needs_face_recognition = pytest.mark.skipif(
    importlib.util.find_spec("face_recognition") is None,
    reason="face_recognition (dlib) is not installed: install the bench extra to compare with it",
)


def _smoke(name: str, output: Path) -> str:
    # embedded form only: the Postgres + Redis form is exercised by the integration tests and full runs
    assert main([name, "--quick", "--output", str(output), "--forms", "embedded"]) == 0
    markdown = (output / "BENCHMARKS.md").read_text()
    assert TITLES[name] in markdown and "|---|" in markdown  # its title and at least one table
    assert f"python -m bench {name} --quick" in markdown
    plots = list((output / "bench" / "plots").glob(f"{name}-*.png"))
    assert plots and all(f"bench/plots/{plot.name}" in markdown for plot in plots)
    assert list((output / "bench" / "out").glob(f"{name}-*.png"))
    return markdown


def test_api_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("api", tmp_path)
    assert "burst of 40 drains with 0 lost" in markdown


def test_client_wait_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("client_wait", tmp_path)
    # one row per way of waiting, each task succeeded with its 5 sampled frames
    assert markdown.count("| succeeded (5 frames) |") == 2
    assert "| embedded | event stream | 5 | 1 |" in markdown and "| embedded | polling only | 5 | 1 |" in markdown


@pytest.mark.testdata
def test_upload_cost_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("upload_cost", tmp_path)
    assert all(f"| {form} | 3 |" in markdown for form in ("base64 JSON", "file as the body", "multipart/form-data"))


@pytest.mark.testdata
def test_service_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("service", tmp_path)
    assert "service, embedded" in markdown and "| bare YuNet loop, OpenCV (reference) |" in markdown


@pytest.mark.testdata
def test_video_benchmark_smoke(tmp_path: Path) -> None:
    assert "loop720p-10s" in _smoke("video", tmp_path)


@pytest.mark.testdata
def test_overlap_benchmark_smoke(tmp_path: Path) -> None:
    assert "prefetch 2 s" in _smoke("overlap", tmp_path)


@pytest.mark.testdata
@needs_face_recognition
def test_peer_benchmark_smoke(tmp_path: Path) -> None:
    assert "face_recognition (dlib HOG" in _smoke("peer", tmp_path)
    # importing face_recognition turns this on process-wide; left on, truncated JPEGs would decode without error
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.testdata
def test_accuracy_benchmark_smoke(tmp_path: Path) -> None:
    assert "WIDER hard AP" in _smoke("accuracy", tmp_path)


@pytest.mark.testdata
def test_engine_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("engine", tmp_path)
    # both runtimes found the same 14 faces in the 2 photos at 640; one row per model, size and thread count
    assert "| YuNet | long side 640 | 1 |" in markdown and "| 14 vs 14 |" in markdown
    assert "| SFace | per face (align + embed) | 1 |" in markdown
    # a video task's frames in batches of 1, 4, 8 and 16, per detector
    assert "| batch 1 ms/frame | batch 4 ms/frame | batch 8 ms/frame | batch 16 ms/frame |" in markdown
    assert "| yunet | 1 |" in markdown and "| centerface | 1 |" in markdown


@pytest.mark.testdata
def test_task_cost_benchmark_smoke(tmp_path: Path) -> None:
    from bench.task_cost import MODEL, ROWS

    # always the distributed form (its own Postgres and Redis), with py-spy on the API's and the worker's processes;
    # a table and no plot
    assert main(["task_cost", "--quick", "--output", str(tmp_path)]) == 0
    markdown = (tmp_path / "BENCHMARKS.md").read_text()
    assert TITLES["task_cost"] in markdown and "python -m bench task_cost --quick" in markdown
    table = [line.strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    rows = {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in table}
    numbers = [*ROWS, "model, bare (this process)", "non-model (total - bare model)"]
    assert all(name in rows for name in [*numbers, "target"])
    assert all(len(rows[name]) == 2 and not any(math.isnan(float(cell)) for cell in rows[name]) for name in numbers)
    # what a task surely spends; smaller rows may read 0 over a few tasks (psutil counts CPU in 10 ms ticks)
    for name in ("total", "model, bare (this process)", "DB writes and reads"):
        assert all(float(cell) > 0 for cell in rows[name]), (name, rows[name])
    assert float(rows["decode"][1]) > 0 and float(rows[MODEL][1]) > 0  # the video's 10 frames
    assert all(cell.endswith(("met", "MISSED")) for cell in rows["target"])
    assert (tmp_path / "bench" / "out" / "task_cost" / "video-worker.txt").stat().st_size > 0  # for speedscope


def test_search_benchmark_smoke(tmp_path: Path) -> None:
    markdown = _smoke("search", tmp_path)
    # 5,000 synthetic faces in a database of its own: top-10 at each ef_search, and max_matches 500 gets 500 rows
    assert "| faces in one collection / planted identities | 5,000 / 500 |" in markdown
    assert all(f"| {ef} | 10 | 10 |" in markdown for ef in (40, 100, 200)) and "| 500 | 500 | 500 |" in markdown


def test_unknown_benchmark_is_refused(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["nope"])
    assert "unknown benchmark" in capsys.readouterr().err
