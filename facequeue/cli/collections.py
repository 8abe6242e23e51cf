"""Face collections with the Python client: `collections create|list|delete|faces|delete-face` manage them,
`collections search` finds a collection's faces like one of its own, `index` adds the faces of a picture to one,
`search` finds a picture's faces among one's faces."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from facequeue.cli.client import JsonFlag, TimeoutOption, media_source, wait_for_task
from facequeue.cli.console import fail, note, output, show
from facequeue.cli.output import show_task
from facequeue.cli.remote import ApiKeyOption, ServerOption, connect
from facequeue.core.schemas import IndexOptions, SearchOptions

if TYPE_CHECKING:
    from facequeue_client import Client, Task

_INDEX, _SEARCH = IndexOptions.model_fields, SearchOptions.model_fields
QualityFilter = _INDEX["quality_filter"].annotation  # the API's own choices
COLLECTIONS_HINT = "`facequeue collections list` shows yours, `facequeue collections create ID` makes one"
FACES_HINT = "`facequeue collections faces ID` lists a collection's faces"

collections_app = typer.Typer(
    help="Face collections: named sets of indexed faces (`facequeue index` adds faces, `facequeue search` finds them)",
    no_args_is_help=True,
)

CollectionId = Annotated[str, typer.Argument(help="the collection's id (letters, digits, _ . -)", show_default=False)]
CollectionOption = Annotated[
    str, typer.Option("--collection", help="the collection's id", show_default=False, rich_help_panel="Collection")
]
FaceId = Annotated[
    str, typer.Argument(help="the face's id (`facequeue collections faces` lists them)", show_default=False)
]
Threshold = Annotated[float, typer.Option(min=0, max=1, help=_SEARCH["threshold"].description)]
MaxMatches = Annotated[int, typer.Option(min=1, help=_SEARCH["max_matches"].description)]
Media = Annotated[str, typer.Argument(help="an image or video file, or an http(s) URL", show_default=False)]


@contextmanager
def _connect(server: str | None, api_key: str | None) -> Iterator[Client]:
    """connect(), with what to do about a missing collection or face, or an existing collection (connect's own hint
    is about tasks)."""
    from facequeue_client import Conflict, NotFound

    with connect(server, api_key) as client:
        try:
            yield client
        except NotFound as error:
            fail(error.message, FACES_HINT if error.field == "face_id" else COLLECTIONS_HINT)
        except Conflict as error:
            fail(error.message, "choose another id, or delete it first with `facequeue collections delete ID`")


@collections_app.command()
def create(
    collection_id: CollectionId,
    description: Annotated[str | None, typer.Option(help="what it holds, for you", show_default=False)] = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Create an empty collection."""
    with _connect(server, api_key) as client:
        created = client.create_collection(collection_id, description)
    show(f"collection {created.collection_id} created")


@collections_app.command("list")
def list_collections(server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """List your collections, by id, with their number of faces."""
    with _connect(server, api_key) as client:
        found = list(client.list_collections(page_size=500))
    if not found:
        note("no collections")
        return
    table = _table("collection", "faces", "created", "description")
    for collection in found:
        created = collection.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(collection.collection_id, str(collection.face_count), created, collection.description or "")
    _print(table)


@collections_app.command()
def delete(collection_id: CollectionId, server: ServerOption = None, api_key: ApiKeyOption = None) -> None:
    """Delete a collection with its faces, their vectors and crops."""
    with _connect(server, api_key) as client:
        client.delete_collection(collection_id)
    show(f"collection {collection_id} deleted, with its faces")


@collections_app.command()
def faces(
    collection_id: CollectionId,
    external_id: Annotated[str | None, typer.Option(help="only the faces of this external id")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List a collection's faces: face id, external id, and the task and frame each was indexed from."""
    with _connect(server, api_key) as client:
        listed = []
        for face in client.list_faces(collection_id, external_id, page_size=min(limit, 500)):
            listed.append(face)
            if len(listed) == limit:
                break
    if not listed:
        note(f"no faces in collection {collection_id}" + (f" with external id {external_id}" if external_id else ""))
        return
    table = _table("face", "external id", "task", "frame", "created")
    for face in listed:
        created = face.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(face.face_id, face.external_id or "", face.detect_task_id or "", face.frame, created)
    _print(table)


@collections_app.command("delete-face")
def delete_face(
    collection_id: CollectionId, face_id: FaceId, server: ServerOption = None, api_key: ApiKeyOption = None
) -> None:
    """Delete one face of a collection, with its vector and crop."""
    with _connect(server, api_key) as client:
        client.delete_face(collection_id, face_id)
    show(f"face {face_id} deleted from collection {collection_id}")


@collections_app.command("search")
def search_by_face(
    collection_id: CollectionId,
    face_id: FaceId,
    threshold: Threshold = _SEARCH["threshold"].default,
    max_matches: MaxMatches = _SEARCH["max_matches"].default,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer's JSON instead of a table")] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Find the collection's faces most like its face FACE_ID, best first: an index query, no model run.

    Prints each match's face id, external id and similarity (the face itself is left out)."""
    with _connect(server, api_key) as client:
        found = client.search_faces(collection_id, face_id, threshold, max_matches)
    if as_json:
        print(found.model_dump_json(indent=2))
        return
    if not found.matches:
        note(f"no face of collection {collection_id} like face {face_id} (similarity {threshold:g} or more)")
        return
    table = _table("face", "external id", "similarity")
    for match in found.matches:
        table.add_row(match.face_id, match.external_id or "", f"{match.similarity:.3f}")
    _print(table)


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in columns:
        table.add_column(name, no_wrap=True)
    return table


def _print(table: Table) -> None:
    """As wide as it needs to be, wider than the terminal if need be: ids stay whole, to be copied into commands."""
    width = Measurement.get(output, output.options.update_width(10_000), table).maximum
    if width <= output.width:
        output.print(table)
    else:  # a console's print is never wider than the console
        Console(file=output.file, soft_wrap=True, width=width).print(table)


def index(
    source: Media,
    collection: CollectionOption,
    external_id: Annotated[
        str, typer.Option(help=_INDEX["external_id"].description, show_default=False, rich_help_panel="Collection")
    ],
    max_faces: Annotated[
        int, typer.Option(min=1, help=_INDEX["max_faces"].description, rich_help_panel="Collection")
    ] = _INDEX["max_faces"].default,
    quality_filter: Annotated[
        QualityFilter, typer.Option(help=_INDEX["quality_filter"].description, rich_help_panel="Collection")
    ] = _INDEX["quality_filter"].default,
    as_json: JsonFlag = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Add the faces of an image or video to a collection: waits, then prints each face's id, or why it was not
    indexed. Exits with 1 when no face was indexed."""
    option = {
        "collection_id": collection,
        "external_id": external_id,
        "max_faces": max_faces,
        "quality_filter": quality_filter,
    }
    task = _run(source, server, api_key, timeout, index=option)
    report = task.result.index if task.result else None
    if as_json or report is None:
        _show_unfinished(task, as_json)
    indexed = len(report.indexed)
    head = f"task {task.detect_task_id}: {_count(indexed, 'face')} indexed into collection {report.collection_id}"
    show(head + (f" as {report.external_id}" if indexed and report.external_id else ""))
    lines = [(face.frame, face.index, f"face_id {face.face_id}") for face in report.indexed]
    lines += [(face.frame, face.index, f"not indexed ({face.reason})") for face in report.unindexed]
    for frame, position, what in sorted(lines, key=lambda line: (_frame_order(line[0]), line[1])):
        show(f"  frame {frame}, face {position}: {what}")
    if not indexed:
        raise typer.Exit(1)


def search(
    source: Media,
    collection: CollectionOption,
    threshold: Annotated[
        float, typer.Option(min=0, max=1, help=_SEARCH["threshold"].description, rich_help_panel="Collection")
    ] = _SEARCH["threshold"].default,
    max_matches: Annotated[
        int, typer.Option(min=1, help=_SEARCH["max_matches"].description, rich_help_panel="Collection")
    ] = _SEARCH["max_matches"].default,
    as_json: JsonFlag = False,
    timeout: TimeoutOption = 600.0,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Find each face of an image or video among a collection's faces: waits, then prints each face's matches,
    best first (face id, external id, similarity)."""
    option = {"collection_id": collection, "threshold": threshold, "max_matches": max_matches}
    task = _run(source, server, api_key, timeout, search=option)
    matches = task.result.matches if task.result else None
    if as_json or matches is None:
        _show_unfinished(task, as_json)
    per_face = [(frame, position, found) for frame in matches for position, found in enumerate(matches[frame])]
    with_match = sum(1 for *_, found in per_face if found)
    show(
        f"task {task.detect_task_id}: {_count(len(per_face), 'face')} searched in collection {collection}, "
        f"{with_match} with a match"
    )
    for frame, position, found in sorted(per_face, key=lambda face: (_frame_order(face[0]), face[1])):
        show(f"  frame {frame}, face {position}: {_count(len(found), 'match') if found else 'no match'}")
        for match in found:
            show(f"    {match.face_id}  {match.external_id or '-'}  {match.similarity:.3f}")


def _run(source: str, server: str | None, api_key: str | None, timeout: float, **option: dict) -> Task:
    """Submit with the index or search option (a file goes as base64 JSON, the only form that takes them), wait."""
    media = media_source(source, has_frame_urls=False)
    with _connect(server, api_key) as client:
        accepted = client.detect(media, **option)
        return wait_for_task(client, accepted.detect_task_id, timeout)


def _show_unfinished(task: Task, as_json: bool) -> NoReturn:
    """With --json, the task's JSON; else a task that did not succeed as `detect` shows it. Exits with 1 unless
    the task succeeded (with --json)."""
    if task.status == "succeeded" and not as_json:  # a server without collections ignored the option
        fail(f"task {task.detect_task_id} succeeded without a collections report", "does this server have them?")
    show_task(task, as_json, None)
    raise typer.Exit(0 if task.status == "succeeded" else 1)


def _frame_order(frame: str) -> tuple[int, str]:
    return (int(frame), "") if frame.isdigit() else (0, frame)


def _count(n: int, noun: str) -> str:
    plural = "es" if noun.endswith("ch") else "s"
    return f"{n} {noun}{'' if n == 1 else plural}"
