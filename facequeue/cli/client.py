"""Talking to a running service over HTTP: submit a file or URL (or the demo clip), wait, print the result."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from facequeue.cli.console import console
from facequeue.enums import FINAL_STATUSES
from facequeue.settings import get_settings

DEFAULT_SERVER = "http://127.0.0.1:8000"


def detect(
    path_or_url: str,
    server: str = typer.Option(DEFAULT_SERVER, envvar="FACEQUEUE_SERVER"),
    api_key: str | None = typer.Option(None, envvar="FACEQUEUE_API_KEY", help="sent as Authorization: Bearer"),
    num_frames: int = 5,
    single_face: bool = False,
    timeout: float = 600.0,
) -> None:
    """Submit an image or video (local path or URL), wait, and print the result JSON."""
    body: dict = {"num_frames": num_frames, "single_face": single_face}
    if path_or_url.startswith(("http://", "https://")):
        body["url"] = path_or_url
    else:
        body["img"] = base64.b64encode(Path(path_or_url).read_bytes()).decode()
    task = _submit_and_wait(server, body, timeout, api_key)
    print(json.dumps(task, indent=2))
    if task["status"] != "succeeded":
        raise typer.Exit(1)


def demo(
    server: str = DEFAULT_SERVER,
    timeout: float = 300.0,
    api_key: str | None = typer.Option(None, envvar="FACEQUEUE_API_KEY", help="sent as Authorization: Bearer"),
) -> None:
    """Detect faces in a generated clip of a real face moving across the frame."""
    from facequeue.cli.demo import write_demo_video  # OpenCV and PyAV: loaded for this command only

    video = write_demo_video(get_settings().data_dir / "demo.mp4")
    _wait_until_ready(server, timeout=60)
    console.print(f"submitting demo video [bold]{video}[/]")
    body = {"img": base64.b64encode(video.read_bytes()).decode(), "num_frames": 5}
    task = _submit_and_wait(server, body, timeout, api_key)
    print(json.dumps(task, indent=2))


def _wait_until_ready(server: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise typer.Exit(f"{server} did not become ready within {timeout:.0f}s")


def _submit_and_wait(server: str, body: dict, timeout: float, api_key: str | None) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(base_url=server, timeout=30, headers=headers) as client:
        response = client.post("/v1/detect", json=body)
        if response.status_code != 202:
            console.print(f"[red]submit failed ({response.status_code}):[/] {response.text}")
            raise typer.Exit(1)
        task_id = response.json()["detect_task_id"]
        console.print(f"task [bold]{task_id}[/] queued")
        deadline = time.monotonic() + timeout
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console) as bar:
            progress = bar.add_task("queued", total=None)
            while time.monotonic() < deadline:
                task = client.get(f"/v1/detect/{task_id}").json()
                bar.update(
                    progress,
                    description=task["status"],
                    completed=task["progress"]["done"],
                    total=task["progress"]["total"] or None,
                )
                if task["status"] in FINAL_STATUSES:
                    return task
                time.sleep(0.25)
    console.print(f"[red]task {task_id} did not finish within {timeout:.0f}s[/]")
    raise typer.Exit(1)
