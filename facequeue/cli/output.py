"""What the client commands print: a task as a few readable lines (or its JSON), a table of tasks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich import box
from rich.table import Table

from facequeue.cli.console import fail, show
from facequeue.cli.remote import URL_FORBIDDEN_HINT

if TYPE_CHECKING:
    from facequeue_client import DetectResult, Task, TaskSummary

FRAMES_LISTED = 10  # a longer video's frames are counted by number of faces instead of listed one per line
PERSONS_LISTED = 5
# what to do when a task failed for a reason its submitter can act on
TASK_ERROR_HINTS = {
    "url_forbidden": URL_FORBIDDEN_HINT,
    "download_failed": "check that the server itself can download this URL",
    "unsupported_media": "send an image (JPEG, PNG, WebP, ...) or a video (MP4, MOV, WebM, ...)",
}


def task_json(task: Task) -> str:
    """The task as the API answered it (fields it did not send are not added)."""
    return task.model_dump_json(indent=2, exclude_unset=True)


def show_task(task: Task, as_json: bool, out: Path | None) -> None:
    if out is not None:
        write_text(out, task_json(task) + "\n")
    if as_json:
        print(task_json(task))
    else:
        for line in task_summary(task):
            show(line)


def write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as error:
        cannot_write(path, error)


def cannot_write(path: Path, error: OSError) -> NoReturn:
    fail(f"cannot write {path}: {error.strerror}", "check that its folder exists and is writable")


def task_summary(task: Task) -> list[str]:
    """A handful of lines: status, the media, faces per frame, persons, detector and timings."""
    head = f"task {task.detect_task_id} {task.status}"
    if task.status in ("queued", "processing"):
        progress = (
            f": {task.progress.done}/{task.progress.total} frames" if task.progress and task.progress.total else ""
        )
        return [head + progress]
    if task.error is not None:
        lines = [f"{head}: {task.error.code}: {task.error.message}"]
        if hint := TASK_ERROR_HINTS.get(task.error.code):
            lines.append(f"  hint: {hint}")
        return lines
    if task.result is None:
        return [head + (" (its result was deleted)" if task.status == "succeeded" else "")]
    result = task.result
    lines = [f"{head} in {task.timings.get('total', 0):.2f}s — {_media(result)}"]
    lines += _faces_per_frame(result)
    lines += _persons(result)
    detector = result.detector
    lines.append(f"  detector {detector.name} {detector.model_version}, working size {detector.max_side} px")
    if task.timings:
        lines.append("  timings " + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in task.timings.items()))
    return lines


def _media(result: DetectResult) -> str:
    media = result.media
    faces = sum(len(frame.region) for frame in result.faces_obj.values())
    size = f"{media.kind} {media.width}x{media.height}"
    if media.kind == "image":
        return f"{size} ({media.mime}): {_count(faces, 'face')}"
    timing = f", {media.duration:.2f}s at {media.fps:g} fps" if media.duration and media.fps else ""
    return f"{size}{timing} ({media.mime}): {_count(result.frame_count, 'frame')} analysed, {_count(faces, 'face')}"


def _faces_per_frame(result: DetectResult) -> list[str]:
    frames = result.faces_obj
    if len(frames) > FRAMES_LISTED:
        by_count = Counter(len(frame.region) for frame in frames.values())
        parts = [f"{_count(faces, 'face')} in {_count(n, 'frame')}" for faces, n in sorted(by_count.items())]
        return ["  faces per frame: " + ", ".join(parts)]
    lines = []
    for index, frame in frames.items():
        when = f" ({frame.frame_time:.2f}s)" if frame.frame_time is not None else ""
        scores = result.scores.get(index) or []
        detail = f" (score {', '.join(f'{score:.2f}' for score in scores)})" if scores else ""
        lines.append(f"  frame {index}{when}: {_count(len(frame.region), 'face')}{detail}")
    return lines


def _persons(result: DetectResult) -> list[str]:
    if result.persons is None:
        return []
    lines = [f"  persons: {len(result.persons)}"]
    for person in result.persons[:PERSONS_LISTED]:
        seen = f"{person['first_seen']:.2f}s-{person['last_seen']:.2f}s"
        lines.append(f"    {person['person_id']}: seen {seen}, {_count(len(person['appearances']), 'appearance')}")
    if len(result.persons) > PERSONS_LISTED:
        lines.append(f"    ... and {len(result.persons) - PERSONS_LISTED} more (--json shows them all)")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def task_table(tasks: list[TaskSummary]) -> Table:
    """Ids whole (they are copied into `get`, `cancel`, `delete`), times in the local zone."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("task", no_wrap=True)
    for name in ("status", "kind", "created", "took"):
        table.add_column(name, no_wrap=True)
    for task in tasks:
        took = f"{(task.finished_at - task.created_at).total_seconds():.1f}s" if task.finished_at else ""
        created = task.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(task.detect_task_id, task.status, task.kind or "", created, took)
    return table
