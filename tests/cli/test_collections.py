"""`facequeue collections create|list|delete|faces|delete-face|search`, `facequeue index` and `facequeue search`
against a real embedded service (its Postgres has pgvector), with the one-line errors a user can meet there."""

from __future__ import annotations

import json
import re

import cv2
import pytest

from tests.cli.conftest import error_line, run_cli
from tests.identity.support import Head, scene

TASK_ID = r"[\w-]{24}"
FACE_ID = r"[\w-]{10,32}"
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
COLLECTIONS_HINT = "`facequeue collections list` shows yours, `facequeue collections create ID` makes one"


@pytest.fixture(scope="module")
def cameraman(tmp_path_factory) -> str:
    """A second person: scikit-image's cameraman."""
    path = tmp_path_factory.mktemp("cameraman") / "cameraman.png"
    cv2.imwrite(str(path), scene([Head("cameraman", 300, 60, 200)]))
    return str(path)


def test_collections_are_created_listed_and_deleted(cli_env) -> None:
    created = run_cli("collections", "create", "staff", "--description", "the office", env=cli_env)
    assert (created.returncode, created.stdout, created.stderr) == (0, "collection staff created\n", "")
    assert error_line(run_cli("collections", "create", "staff", env=cli_env)) == (
        "error: collection staff already exists — choose another id, or delete it first with "
        "`facequeue collections delete ID`"
    )
    assert run_cli("collections", "create", "crew", env=cli_env).returncode == 0
    listed = run_cli("collections", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    header, _rule, *rows = listed.stdout.splitlines()
    assert header.split() == ["collection", "faces", "created", "description"]
    assert re.fullmatch(rf"\s*crew\s+0\s+{WHEN}\s*", rows[0])
    assert re.fullmatch(rf"\s*staff\s+0\s+{WHEN}\s+the office\s*", rows[1]) and len(rows) == 2

    for name in ("staff", "crew"):
        deleted = run_cli("collections", "delete", name, env=cli_env)
        assert (deleted.returncode, deleted.stdout) == (0, f"collection {name} deleted, with its faces\n")
    nothing = run_cli("collections", "list", env=cli_env)
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "no collections\n")
    assert error_line(run_cli("collections", "delete", "staff", env=cli_env)) == (
        f"error: collection staff not found — {COLLECTIONS_HINT}"
    )
    assert error_line(run_cli("collections", "faces", "staff", env=cli_env)) == (
        f"error: collection staff not found — {COLLECTIONS_HINT}"
    )


def test_index_then_list_faces_and_search(cli_env, photos, cameraman) -> None:
    assert run_cli("collections", "create", "people", env=cli_env).returncode == 0
    indexed = run_cli("index", str(photos["one"]), "--collection", "people", "--external-id", "astronaut", env=cli_env)
    assert indexed.returncode == 0, indexed.stderr
    head, line = indexed.stdout.splitlines()
    task_id = re.fullmatch(rf"task ({TASK_ID}): 1 face indexed into collection people as astronaut", head).group(1)
    face_id = re.fullmatch(rf"  frame 0, face 0: face_id ({FACE_ID})", line).group(1)
    him = run_cli("index", cameraman, "--collection", "people", "--external-id", "cameraman", env=cli_env)
    assert him.returncode == 0, him.stderr
    him_id = re.search(rf"face_id ({FACE_ID})$", him.stdout).group(1)

    # the second astronaut is over --max-faces 1; a picture without a face indexes nothing and exits 1
    two = run_cli("index", str(photos["two"]), "--collection", "people", "--external-id", "pair", env=cli_env)
    lines = two.stdout.splitlines()
    assert two.returncode == 0, two.stderr
    assert re.fullmatch(rf"task {TASK_ID}: 1 face indexed into collection people as pair", lines[0])
    assert sorted(line.split(": ")[1] for line in lines[1:])[1] == "not indexed (exceeds_max_faces)"
    assert len(lines) == 3
    none = run_cli("index", str(photos["none"]), "--collection", "people", "--external-id", "x", env=cli_env)
    assert none.returncode == 1
    assert re.fullmatch(rf"task {TASK_ID}: 0 faces indexed into collection people\n", none.stdout)

    faces = run_cli("collections", "faces", "people", "--external-id", "astronaut", env=cli_env)
    header, _rule, *rows = faces.stdout.splitlines()
    assert header.split() == ["face", "external", "id", "task", "frame", "created"]
    assert [row.split()[:4] for row in rows] == [[face_id, "astronaut", task_id, "0"]]
    assert len(run_cli("collections", "faces", "people", env=cli_env).stdout.splitlines()) == 2 + 3
    nobody = run_cli("collections", "faces", "people", "--external-id", "nobody", env=cli_env)
    assert (nobody.returncode, nobody.stdout, nobody.stderr) == (
        0,
        "",
        "no faces in collection people with external id nobody\n",
    )

    found = run_cli("search", cameraman, "--collection", "people", "--max-matches", "1", env=cli_env)
    assert found.returncode == 0, found.stderr
    head, face, match = found.stdout.splitlines()
    assert re.fullmatch(rf"task {TASK_ID}: 1 face searched in collection people, 1 with a match", head)
    assert face == "  frame 0, face 0: 1 match"
    assert re.fullmatch(rf"    {him_id}  cameraman  (0\.\d{{3}}|1\.000)", match)
    as_json = run_cli("search", str(photos["one"]), "--collection", "people", "--json", env=cli_env)
    matches = json.loads(as_json.stdout)["result"]["matches"]
    assert [m["external_id"] for m in matches["0"][0]][:1] == ["astronaut"]  # herself first, then her twins
    assert {m["external_id"] for m in matches["0"][0]} <= {"astronaut", "pair"}
    assert run_cli("collections", "create", "empty", env=cli_env).returncode == 0
    alone = run_cli("search", cameraman, "--collection", "empty", env=cli_env)
    assert alone.returncode == 0, alone.stderr
    assert re.fullmatch(
        rf"task {TASK_ID}: 1 face searched in collection empty, 0 with a match\n  frame 0, face 0: no match\n",
        alone.stdout,
    )


def test_index_and_search_name_a_missing_collection_in_one_line(cli_env, photos) -> None:
    for command in (["index", str(photos["one"]), "--external-id", "x"], ["search", str(photos["one"])]):
        line = error_line(run_cli(*command, "--collection", "nobody", env=cli_env))
        assert line == f"error: collection nobody not found — {COLLECTIONS_HINT}"
    missing = error_line(run_cli("search", "no-such.jpg", "--collection", "people", env=cli_env))
    assert re.fullmatch(
        r"error: no such file: /.*/no-such\.jpg — "
        r"give an image or video file, or an http\(s\) URL",
        missing,
    )


def test_search_by_face_id_and_delete_a_face(cli_env, photos, cameraman) -> None:
    assert run_cli("collections", "create", "people", env=cli_env).returncode == 0
    ids = {}
    for name, picture in (("astronaut", str(photos["one"])), ("cameraman", cameraman)):
        indexed = run_cli("index", picture, "--collection", "people", "--external-id", name, env=cli_env)
        assert indexed.returncode == 0, indexed.stderr
        ids[name] = re.search(rf"face_id ({FACE_ID})$", indexed.stdout).group(1)
    her, him = ids["astronaut"], ids["cameraman"]

    # the face itself is left out; the cameraman is below the default threshold (0.5)
    alone = run_cli("collections", "search", "people", her, env=cli_env)
    assert (alone.returncode, alone.stdout) == (0, "")
    assert alone.stderr == f"no face of collection people like face {her} (similarity 0.5 or more)\n"
    found = run_cli("collections", "search", "people", her, "--threshold", "0", "--max-matches", "1", env=cli_env)
    assert found.returncode == 0, found.stderr
    header, _rule, *rows = found.stdout.splitlines()
    assert header.split() == ["face", "external", "id", "similarity"]
    assert len(rows) == 1 and re.fullmatch(rf"\s*{him}\s+cameraman\s+0\.\d{{3}}\s*", rows[0]), rows
    as_json = run_cli("collections", "search", "people", her, "--threshold", "0", "--json", env=cli_env)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert answer["face_id"] == her
    assert [(m["face_id"], m["external_id"]) for m in answer["matches"]] == [(him, "cameraman")]
    assert f"{answer['matches'][0]['similarity']:.3f}" == rows[0].split()[2]
    none_json = run_cli("collections", "search", "people", her, "--json", env=cli_env)
    assert (none_json.returncode, json.loads(none_json.stdout)) == (0, {"face_id": her, "matches": []})

    faces_hint = "`facequeue collections faces ID` lists a collection's faces"
    assert error_line(run_cli("collections", "search", "people", "nope", env=cli_env)) == (
        f"error: face nope not found in collection people — {faces_hint}"
    )
    assert error_line(run_cli("collections", "search", "nobody", her, env=cli_env)) == (
        f"error: collection nobody not found — {COLLECTIONS_HINT}"
    )

    deleted = run_cli("collections", "delete-face", "people", him, env=cli_env)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (
        0,
        f"face {him} deleted from collection people\n",
        "",
    )
    assert error_line(run_cli("collections", "delete-face", "people", him, env=cli_env)) == (
        f"error: face {him} not found in collection people — {faces_hint}"
    )
    assert error_line(run_cli("collections", "delete-face", "nobody", her, env=cli_env)) == (
        f"error: collection nobody not found — {COLLECTIONS_HINT}"
    )
    _header, _rule, *left = run_cli("collections", "faces", "people", env=cli_env).stdout.splitlines()
    assert [row.split()[:2] for row in left] == [[her, "astronaut"]]
    empty = run_cli("collections", "search", "people", her, "--threshold", "0", env=cli_env)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f"no face of collection people like face {her} (similarity 0 or more)\n"
