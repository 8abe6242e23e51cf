"""Talking to a running service over HTTP with the Python client: submit (`detect`, the `demo` clip), look at
tasks (`get`, `list`), stop them (`cancel`, `delete`). Batches are in batch.py."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from facequeue.cli.console import console, fail, note, output, show
from facequeue.cli.output import cannot_write, show_task, task_json, task_table
from facequeue.cli.remote import REQUEST_TIMEOUT, ApiKeyOption, ServerOption, connect, explain
from facequeue.core.enums import TaskStatus
from facequeue.core.schemas import DetectOptionsBase

if TYPE_CHECKING:
    from facequeue_client import Client, Task

_FIELDS = DetectOptionsBase.model_fields
# the API's own choices, so the flags accept exactly what the server does
MediaType = _FIELDS["media_type"].annotation
Landmarks = _FIELDS["landmarks"].annotation
Detector = _FIELDS["detector"].annotation


def _option(field: str) -> typer.models.OptionInfo:
    """A flag for one POST /v1/detect field, described as the API describes it; unset, the server's default holds."""
    return typer.Option(help=_FIELDS[field].description, show_default=False, rich_help_panel="Detection options")


TaskId = Annotated[str, typer.Argument(help="a detect_task_id")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print the task's JSON instead of a summary")]
OutOption = Annotated[Path | None, typer.Option("--out", help="also write the task's JSON to this file")]
TimeoutOption = Annotated[float, typer.Option(help="seconds to wait for the result")]


def detect(
    source: Annotated[
        str | None, typer.Argument(help="an image or video file, or an http(s) URL", show_default=False)
    ] = None,
    num_frames: Annotated[int | None, _option("num_frames")] = None,
    sample_fps: Annotated[float | None, _option("sample_fps")] = None,
    single_face: Annotated[bool | None, _option("single_face")] = None,
    max_side: Annotated[int | None, _option("max_side")] = None,
    media_type: Annotated[MediaType | None, _option("media_type")] = None,
    landmarks: Annotated[Landmarks | None, _option("landmarks")] = None,
    persons: Annotated[bool | None, _option("persons")] = None,
    tiling: Annotated[bool | None, _option("tiling")] = None,
    need_rotate_detection: Annotated[bool | None, _option("need_rotate_detection")] = None,
    return_face_url: Annotated[bool | None, _option("return_face_url")] = None,
    expand_ratio: Annotated[float | None, _option("expand_ratio")] = None,
    detector: Annotated[Detector | None, _option("detector")] = None,
    min_score: Annotated[float | None, _option("min_score")] = None,
    frame_url: Annotated[
        list[str] | None,
        typer.Option(
            help="a still frame's URL, repeated for several (instead of SOURCE)", rich_help_panel="Detection options"
        ),
    ] = None,
    timestamp: Annotated[
        list[float] | None,
        typer.Option(help="seconds of each --frame-url, in the same order", rich_help_panel="Detection options"),
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option(help="where this task's webhook goes", rich_help_panel="Detection options")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="print the task id (with --json: the accepted task) at once")
    ] = False,
    as_json: JsonFlag = False,
    out: OutOption = None,
    annotate: Annotated[
        Path | None, typer.Option(help="save the server's annotated picture (boxes, landmarks) as this JPEG")
    ] = None,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Submit an image or video (a file or an http(s) URL), wait, and print a summary of the faces found."""
    options = {
        "num_frames": num_frames,
        "sample_fps": sample_fps,
        "single_face": single_face,
        "max_side": max_side,
        "media_type": media_type,
        "landmarks": landmarks,
        "persons": persons,
        "tiling": tiling,
        "need_rotate_detection": need_rotate_detection,
        "return_face_url": return_face_url,
        "expand_ratio": expand_ratio,
        "detector": detector,
        "min_score": min_score,
        "frame_urls": frame_url,
        "timestamps": timestamp,
        "callback_url": callback_url,
    }
    media = media_source(source, bool(frame_url))
    with connect(server, api_key) as client:
        accepted = client.detect(media, **{name: value for name, value in options.items() if value is not None})
        if no_wait:
            print(task_json(accepted) if as_json else accepted.detect_task_id)
            return
        task = wait_for_task(client, accepted.detect_task_id, timeout)
        show_task(task, as_json, out)
        if annotate is not None and task.status == "succeeded":
            _save_preview(client, api_key, task.detect_task_id, annotate)
    if task.status != "succeeded":
        raise typer.Exit(1)


def media_source(source: str | None, has_frame_urls: bool) -> str | Path | None:
    if source is None:
        if not has_frame_urls:
            fail("nothing to detect", "give an image or video file, an http(s) URL, or --frame-url URL (repeated)")
        return None
    if source.lower().startswith(("http://", "https://")):
        return source
    path = Path(source)
    if path.is_dir():
        fail(f"{source} is a folder", f"`facequeue batch {source}` detects every image and video in it")
    if not path.is_file():
        fail(f"no such file: {path.absolute()}", "give an image or video file, or an http(s) URL")
    return path


def wait_for_task(client: Client, task_id: str, timeout: float) -> Task:
    """Wait with a progress bar on stderr (only on a terminal); Ctrl-C leaves the task running."""
    from facequeue_client import WaitTimeout

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    try:
        with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
            shown = bar.add_task(f"task {task_id} queued", total=None)

            def on_progress(task: Task) -> None:
                done, total = (task.progress.done, task.progress.total) if task.progress else (0, 0)
                bar.update(shown, description=f"task {task_id} {task.status}", completed=done, total=total or None)

            return client.wait(task_id, timeout=timeout, on_progress=on_progress)
    except WaitTimeout as error:
        fail(
            f"task {task_id} is still {error.last.status} after {timeout:g}s",
            f"`facequeue get {task_id}` shows it later",
        )
    except KeyboardInterrupt:
        fail(
            f"stopped waiting; task {task_id} goes on",
            f"`facequeue get {task_id}` shows it, `facequeue cancel {task_id}` stops it",
        )


def _save_preview(client: Client, api_key: str | None, task_id: str, path: Path) -> None:
    """GET /v1/detect/{id}/preview.jpg, the first frame with boxes, landmarks, scores and person ids drawn."""
    from facequeue_client import FacequeueError, NotFound
    from facequeue_client.errors import raise_for_error

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(
            f"{client.base_url}/v1/detect/{task_id}/preview.jpg", headers=headers, timeout=REQUEST_TIMEOUT
        )
        raise_for_error(response)
    except httpx.HTTPError as error:
        fail(f"could not download the annotated picture from {client.base_url}: {error}")
    except NotFound as error:
        if error.code == "preview_not_found":  # its message says why
            fail(f"could not download the annotated picture: {error.message}")
        # the task was just read: what is missing is the endpoint
        fail(f"could not download the annotated picture: {error.message}", "this server makes no previews yet")
    except FacequeueError as error:
        message, hint = explain(error, client.base_url)
        fail(f"could not download the annotated picture: {message}", hint)
    try:
        path.write_bytes(response.content)
    except OSError as error:
        cannot_write(path, error)
    note(f"annotated picture saved to {path}")


def get(
    task_id: TaskId,
    as_json: JsonFlag = False,
    out: OutOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show one task: its summary, or its JSON."""
    with connect(server, api_key) as client:
        show_task(client.get(task_id), as_json, out)


def list_tasks(
    status: Annotated[TaskStatus | None, typer.Option(help="only tasks in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 20,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List your tasks, newest first."""
    with connect(server, api_key) as client:
        tasks = []
        for task in client.list(status, page_size=min(limit, 500)):
            tasks.append(task)
            if len(tasks) == limit:
                break
    if not tasks:
        note("no tasks" + (f" with status {status}" if status else ""))
        return
    output.print(task_table(tasks))


def cancel(task_id: TaskId, server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Cancel a queued or processing task; a finished one is left as it is, its result kept."""
    with connect(server, api_key) as client:
        task = client.cancel(task_id)
    if task.status == "canceled":
        show(f"task {task_id} canceled")
    else:
        show(f"task {task_id} had already {task.status}; its result is kept")


def delete(task_id: TaskId, server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a task's result and stored media (a task still running is canceled first)."""
    with connect(server, api_key) as client:
        task = client.delete(task_id)
    show(f"task {task_id} ({task.status}): result and media deleted")


def demo(
    timeout: TimeoutOption = 300.0,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Detect faces in a generated clip of a real face moving across the frame."""
    from facequeue.cli.demo import write_demo_video  # OpenCV and PyAV: loaded for this command only

    with connect(server, api_key) as client, tempfile.TemporaryDirectory(prefix="facequeue-demo-") as folder:
        video = write_demo_video(Path(folder) / "demo.mp4")
        _wait_until_ready(client.base_url, timeout=timeout)  # a first start also runs initdb and loads models
        note(f"submitting a generated clip of a real face moving across the frame to {client.base_url}")
        task = wait_for_task(client, client.detect(video, num_frames=5).detect_task_id, timeout)
        show_task(task, as_json=False, out=None)


def _wait_until_ready(server: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    fail(f"{server} did not become ready within {timeout:.0f}s", "its log says why")
