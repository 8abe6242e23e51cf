"""`facequeue batch`: a folder of media or a JSONL manifest as one batch, streamed without holding it, followed
with a progress bar, its results downloaded; resumable with --batch-id, cancelable with Ctrl-C. Every item is
sent with a `name` (its file path as given, its URL, or its manifest line) that the server echoes in the
results and failures, so they say which file each is about, even when followed again with --batch-id."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import click
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from facequeue.cli.console import console, fail, note, show
from facequeue.cli.output import cannot_write
from facequeue.cli.remote import ApiKeyOption, ServerOption, connect
from facequeue.core.media_kinds import kind_from_extension
from facequeue.core.schemas import ITEM_NAME_MAX_LENGTH

if TYPE_CHECKING:
    from facequeue_client import BatchAccepted, BatchItemMatches, BatchPersonItem, BatchStatus, Client

FAILURES_LISTED = 5  # the server's status carries the first failures; the results file has them all
LISTED = 10  # items with matches, and persons seen in several items, shown after the batch
NAMES_SHOWN = 5  # of a person's items
INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT)


def batch(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="a folder (each image and video in it, by file extension, in name order) or a JSONL manifest "
            "(one POST /v1/detect body per line); not read again with --batch-id",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the results here: one JSON line per item, in submit order")
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch-id", help="follow this batch (printed when it was submitted) instead")
    ] = None,
    defaults: Annotated[
        str | None, typer.Option(help='detection options for every item, as JSON: {"num_frames": 10}')
    ] = None,
    callback_url: Annotated[str | None, typer.Option(help="where the batch.completed webhook goes")] = None,
    search: Annotated[
        str | None,
        typer.Option(help="search this face collection in every item; the items that met its faces are listed"),
    ] = None,
    persons: Annotated[
        bool, typer.Option("--persons", help="batch-wide person ids; the persons seen in several items are listed")
    ] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a batch: submit a folder or a manifest, show its progress, then write its results (--out)."""
    with connect(server, api_key) as client:
        accepted, skipped = None, []
        if batch_id is None:
            batch_wide = {"callback_url": callback_url, "persons": persons}
            if search is not None:
                batch_wide["search"] = {"collection_id": search}
            accepted, skipped = _submit(client, source, _defaults(defaults), batch_wide)
        batch_id = accepted.batch_id if accepted else batch_id
        resume = f"facequeue batch --batch-id {batch_id}" + (f" --out {out}" if out else "")
        try:
            if accepted:  # said inside the `try`, so a Ctrl-C right after it is still answered
                note(f"batch {batch_id}: {accepted.total} items submitted (if interrupted, follow it with `{resume}`)")
            status = _follow(client, batch_id)
        except KeyboardInterrupt:
            _interrupted(client, batch_id, resume)
        _report(status, skipped)
        if search is not None:
            _report_matches(client, batch_id)
        if status.persons:
            _report_persons(client, batch_id)
        if out is not None:
            _download(client, batch_id, out)
        else:
            note(f"results: `{resume} --out results.jsonl`")
    if status.status != "completed" or status.counts.get("succeeded", 0) != status.total:
        raise typer.Exit(1)


def _defaults(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"--defaults is not JSON: {error}", """write it as '{"num_frames": 10}'""")
    if not isinstance(value, dict):
        fail("--defaults must be a JSON object", """write it as '{"num_frames": 10}'""")
    return value


@dataclass(frozen=True)
class Skipped:
    """A file in the folder that was not sent, and why."""

    path: Path
    reason: str


def _submit(
    client: Client, source: Path | None, defaults: dict[str, Any] | None, batch_wide: dict[str, Any]
) -> tuple[BatchAccepted, list[Skipped]]:
    """The batch, and the folder's files that were not sent."""
    skipped: list[Skipped] = []
    if source is None:
        fail("nothing to submit", "give a folder or a JSONL manifest, or --batch-id to follow a batch")
    if source.is_dir():
        files, skipped = _media_files(source)
        items = (_file_item(path) for path in files)
    elif source.is_file():
        _check_manifest(source)
        items = _manifest_items(source)
    else:
        fail(f"no such file or folder: {source.absolute()}", "give a folder of images and videos, or a JSONL manifest")
    try:
        return client.stream_batch(items, defaults=defaults, **batch_wide), skipped
    except KeyboardInterrupt:
        fail("interrupted while sending the batch; no batch was created", "run the command again")


def _media_files(folder: Path) -> tuple[list[Path], list[Skipped]]:
    """The folder's images and videos in name order, and everything else in it, with the reason it is left out."""
    files, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            skipped.append(Skipped(path, "a folder (folders inside are not read)"))
        elif not path.is_file():
            skipped.append(Skipped(path, "not a regular file"))
        elif not kind_from_extension(path.name):
            skipped.append(Skipped(path, "not an image or video extension (.jpg, .png, .mp4, ...)"))
        else:
            files.append(path)
    if not files:
        fail(f"no image or video files in {folder.absolute()}", "files are picked by extension (.jpg, .png, .mp4, ...)")
    return files, skipped


def _file_item(path: Path) -> dict[str, str]:
    return {"img": base64.b64encode(path.read_bytes()).decode("ascii"), "name": str(path)}


def _check_manifest(path: Path) -> None:
    """Every line an object, checked before sending: a bad line found mid-upload would leave half a request."""
    count = 0
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                fail(f"{path} line {number} is not JSON: {error.msg}", "a manifest holds one JSON object per line")
            if not isinstance(item, dict):
                fail(f"{path} line {number} is not a JSON object", "a manifest holds one JSON object per line")
            count += 1
    if count == 0:
        fail(f"{path} holds no items", "a manifest holds one POST /v1/detect body per line")


def _manifest_items(path: Path) -> Iterator[dict[str, Any]]:
    """Each line's item, named (unless it names itself) by its URL, or else by its line in the manifest."""
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                item = json.loads(line)
                url = item.get("url")
                own_url = url if isinstance(url, str) and 0 < len(url) <= ITEM_NAME_MAX_LENGTH else None
                yield {"name": own_url or f"{path} line {number}", **item}


def _follow(client: Client, batch_id: str) -> BatchStatus:
    """Poll the batch (politely: the client's growing pause) with a bar of done/total, rate, ETA and failures."""
    columns = (
        TextColumn("batch {task.fields[batch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}  ETA {task.fields[eta]}  {task.fields[failed]} failed"),
    )
    started, first_done = time.monotonic(), None
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        shown = bar.add_task("", total=None, batch=batch_id, rate="-", eta="-", failed=0)

        def on_progress(status: BatchStatus) -> None:
            nonlocal first_done
            done = _done(status)
            first_done = done if first_done is None else first_done
            elapsed = time.monotonic() - started
            rate = f"{(done - first_done) / elapsed:.1f} items/s" if elapsed > 0 and done > first_done else "-"
            eta = f"{status.eta_seconds:.0f}s" if status.eta_seconds is not None else "-"
            failed = status.counts.get("failed", 0)
            bar.update(shown, completed=done, total=status.total, rate=rate, eta=eta, failed=failed)

        return client.wait_batch(batch_id, on_progress=on_progress)


def _interrupted(client: Client, batch_id: str, resume: str) -> NoReturn:
    """Ctrl-C: on a terminal, ask whether to cancel the batch; otherwise (or on no) leave it running."""
    cancel = False
    if sys.stdin.isatty():
        try:
            cancel = typer.confirm(f"cancel batch {batch_id}?", default=False, err=True)
        except click.Abort:
            cancel = False
    if cancel:
        status = client.cancel_batch(batch_id)
        note(f"batch {batch_id} canceled ({_done(status)}/{status.total} items had finished)")
    else:
        note(f"batch {batch_id} goes on; follow it again with `{resume}`")
    raise typer.Exit(INTERRUPTED)


def _done(status: BatchStatus) -> int:
    return sum(status.counts.get(state, 0) for state in ("succeeded", "failed", "canceled"))


def _report(status: BatchStatus, skipped: list[Skipped]) -> None:
    counts = ", ".join(f"{status.counts.get(state, 0)} {state}" for state in ("succeeded", "failed", "canceled"))
    show(f"batch {status.batch_id} {status.status}: {counts} of {status.total}")
    for failure in status.failures[:FAILURES_LISTED]:
        error = failure.error
        # a batch submitted without names (by another client) has only its position to go by
        where = f"{failure.name} (item {failure.position}, " if failure.name else f"item {failure.position} ("
        show(f"  {where}task {failure.detect_task_id}): {error.get('code')}: {error.get('message')}")
    for file in skipped:
        show(f"  skipped {file.path}: {file.reason}")


def _report_matches(client: Client, batch_id: str) -> None:
    """Which items met the collection's faces, and whom (by external id, else face id)."""
    shown, count = [], 0
    for line in client.batch_matches(batch_id):
        count += 1
        if len(shown) < LISTED:
            whom = sorted({match.external_id or match.face_id for match in line.matches})
            shown.append(f"  {_item_name(line)}: {', '.join(whom)}")
    show(f"{count} items met faces of the collection" + (f", the first {LISTED}:" if count > LISTED else ""))
    for text in shown:
        show(text)


def _report_persons(client: Client, batch_id: str) -> None:
    """How many batch-wide persons, and those seen in several items with the items' names."""
    shown, count, shared = [], 0, 0
    for person in client.batch_persons(batch_id):
        count += 1
        if len(person.items) > 1:
            shared += 1
            names = [_item_name(item) for item in person.items[:NAMES_SHOWN]]
            more = len(person.items) - NAMES_SHOWN
            if len(shown) < LISTED:
                shown.append(
                    f"  {person.batch_person_id}: {', '.join(names)}" + (f" and {more} more" if more > 0 else "")
                )
    show(f"{count} persons across the batch, {shared} of them in several items")
    for text in shown:
        show(text)


def _item_name(line: BatchItemMatches | BatchPersonItem) -> str:
    return line.name or f"item {line.position}"


def _download(client: Client, batch_id: str, out: Path) -> None:
    """The results as the server streams them, one line per item in submit order, never held whole."""
    written = 0
    try:
        with out.open("w") as file:
            for result in client.batch_results(batch_id):
                file.write(result.model_dump_json(exclude_unset=True) + "\n")
                written += 1
    except OSError as error:
        cannot_write(out, error)
    note(f"{written} results written to {out}")
