"""Face collections on real Postgres + pgvector: the /v1/collections API, tenant isolation, and the index and search
options run by a real worker on real faces (the astronaut and the cameraman; the two Johns of the shared identity
set in CI)."""

from __future__ import annotations

import base64
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from db.face_models import CollectionFace, FaceCollection, TaskFaceEmbedding
from facequeue.cli.demo import astronaut_bgr, write_demo_video
from facequeue.core.settings import get_settings
from facequeue.plumbing.sessions import session_scope
from tests.conftest import SHARED_TESTDATA
from tests.identity.support import Head, scene
from tests.support import wait_for_final, wait_until
from tests.test_metrics import parse, value
from tests.test_tenants import bearer, make_client, new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def collections_client(api_client):
    """The tenant-less API, with no collection, and no face crop, left from an earlier test (in any order)."""
    with session_scope() as session:
        session.execute(FaceCollection.__table__.delete())
    shutil.rmtree(get_settings().media_dir / "collections", ignore_errors=True)
    return api_client


def _png(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


def _detect(client, image: np.ndarray, **options) -> dict:
    response = client.post("/v1/detect", json={"img": _png(image), **options})
    assert response.status_code == 202, response.text
    task = wait_for_final(client, response.json()["detect_task_id"])
    assert task["status"] == "succeeded", task
    return task["result"]


def _stored_rows() -> tuple[int, int]:
    with session_scope() as session:
        return (
            session.scalar(select(func.count()).select_from(FaceCollection)),
            session.scalar(select(func.count()).select_from(CollectionFace)),
        )


def _crop_files() -> list[Path]:
    root = get_settings().media_dir / "collections"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.is_dir() else []


def test_collections_are_created_listed_read_and_deleted(collections_client) -> None:
    client = collections_client
    created = client.post("/v1/collections", json={"collection_id": "staff", "description": "the office"})
    assert created.status_code == 201
    assert set(created.json()) == {"collection_id", "description", "face_count", "created_at"}
    assert created.json()["face_count"] == 0
    again = client.post("/v1/collections", json={"collection_id": "staff"})
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "collection_exists",
        "message": "collection staff already exists",
        "field": "collection_id",
    }
    bad = client.post("/v1/collections", json={"collection_id": "no spaces"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "collection_id"

    for name in ("a-1", "b.2", "c_3"):
        assert client.post("/v1/collections", json={"collection_id": name}).status_code == 201
    first = client.get("/v1/collections", params={"limit": 3}).json()
    assert [c["collection_id"] for c in first["items"]] == ["a-1", "b.2", "c_3"]
    rest = client.get("/v1/collections", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert [c["collection_id"] for c in rest["items"]] == ["staff"] and rest["next_cursor"] is None

    assert client.get("/v1/collections/staff").json()["description"] == "the office"
    assert client.delete("/v1/collections/staff").status_code == 204
    missing = client.get("/v1/collections/staff")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "collection staff not found"
    assert client.delete("/v1/collections/staff").status_code == 404


def test_a_task_naming_a_missing_collection_is_refused_at_submit(collections_client) -> None:
    for option in ("index", "search"):
        response = collections_client.post(
            "/v1/detect", json={"url": "https://example.com/a.jpg", option: {"collection_id": "nobody"}}
        )
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "collection nobody not found",
            "field": f"{option}.collection_id",
        }
    refused = collections_client.post(
        "/v1/batches", json={"items": [{"url": "https://example.com/a.jpg", "index": {"collection_id": "nobody"}}]}
    )
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "items[0]: collection nobody not found"


def test_a_tenant_never_reaches_another_tenants_collection(clean_state) -> None:
    with make_client() as client:
        alice, bob = bearer(new_key("alice")), bearer(new_key("bob"))
        assert client.post("/v1/collections", json={"collection_id": "staff"}, headers=alice).status_code == 201
        assert client.get("/v1/collections", headers=bob).json() == {"items": [], "next_cursor": None}
        probes = [
            ("get", "/v1/collections/staff", None),
            ("delete", "/v1/collections/staff", None),
            ("get", "/v1/collections/staff/faces", None),
            ("delete", "/v1/collections/staff/faces/x", None),
            ("post", "/v1/collections/staff/search", {"face_id": "x"}),
            ("post", "/v1/detect", {"url": "https://example.com/a.jpg", "search": {"collection_id": "staff"}}),
        ]
        for method, path, body in probes:
            response = client.request(method, path, json=body, headers=bob)
            assert response.status_code == 404, (method, path)
            assert "collection staff not found" in response.json()["error"]["message"]
        # bob may have a "staff" of his own, apart from alice's
        assert client.post("/v1/collections", json={"collection_id": "staff"}, headers=bob).status_code == 201
        assert client.get("/v1/collections/staff", headers=alice).status_code == 200


def test_faces_are_indexed_searched_and_deleted_with_their_vectors_and_crops(collections_client, worker) -> None:
    client = collections_client
    for name in ("staff", "other"):
        assert client.post("/v1/collections", json={"collection_id": name}).status_code == 201

    # the astronaut, indexed; the cameraman beside her is the smaller face, over max_faces
    both = scene([Head("astronaut", 40, 60, 220), Head("cameraman", 400, 120, 120)])
    wanted = {"collection_id": "staff", "external_id": "astronaut", "quality_filter": "none"}
    indexed = _detect(client, both, index=wanted)["index"]
    assert indexed["collection_id"] == "staff" and indexed["external_id"] == "astronaut"
    [astronaut] = indexed["indexed"]
    assert (astronaut["frame"], astronaut["index"]) == ("0", 0)
    assert indexed["unindexed"] == [{"frame": "0", "index": 1, "reason": "exceeds_max_faces"}]
    # the quality gate: a 29 x 36 px face is too small; the cameraman's turned head (nose 0.58 of the eyes'
    # distance off centre) too turned for "high", not for the default
    tiny = scene([Head("astronaut", 300, 150, 60)])
    refused = _detect(client, tiny, index={"collection_id": "staff", "external_id": "astronaut"})["index"]
    assert refused["indexed"] == [] and refused["unindexed"] == [{"frame": "0", "index": 0, "reason": "too_small"}]
    him_alone = scene([Head("cameraman", 300, 60, 200)])
    strict = {"collection_id": "staff", "external_id": "cameraman", "quality_filter": "high"}
    turned = _detect(client, him_alone, index=strict)["index"]
    assert turned["unindexed"] == [{"frame": "0", "index": 0, "reason": "extreme_pose"}]
    default = {"collection_id": "staff", "external_id": "cameraman"}
    cameraman = _detect(client, him_alone, index=default)["index"]["indexed"][0]
    second = _detect(client, astronaut_bgr(), index={"collection_id": "staff", "external_id": "astronaut"})
    second_id = second["index"]["indexed"][0]["face_id"]

    staff = client.get("/v1/collections/staff").json()
    assert staff["face_count"] == 3
    with TestClient(create_app(get_settings().model_copy(update={"metrics_cache_seconds": 0}))) as uncached:
        assert value(parse(uncached.get("/metrics").text), "facequeue_collection_faces") == 3
    faces = client.get("/v1/collections/staff/faces", params={"external_id": "astronaut"}).json()["items"]
    assert sorted(face["face_id"] for face in faces) == sorted([astronaut["face_id"], second_id])
    crop = client.get(faces[0]["face_url"])
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert len(_crop_files()) == 3

    # search by image: the mirrored astronaut finds both of her faces first, the cameraman his own
    found = _detect(client, scene([Head("astronaut", 300, 60, 180, mirrored=True)]), search={"collection_id": "staff"})
    [[matches]] = found["matches"].values()
    assert [m["external_id"] for m in matches] == ["astronaut", "astronaut"]
    assert all(0.5 <= m["similarity"] <= 1 for m in matches)
    assert matches[0]["similarity"] >= matches[1]["similarity"]
    him = _detect(client, scene([Head("cameraman", 100, 40, 160)]), search={"collection_id": "staff", "max_matches": 1})
    assert [m["face_id"] for m in him["matches"]["0"][0]] == [cameraman["face_id"]]
    nobody = _detect(client, both, search={"collection_id": "other"})
    assert nobody["matches"] == {"0": [[], []]}

    # search by face id: no model run, the face itself left out
    searches = value(parse(client.get("/metrics").text), "facequeue_collection_search_seconds_count", via="face_id")
    by_face = client.post("/v1/collections/staff/search", json={"face_id": astronaut["face_id"]}).json()
    assert [m["face_id"] for m in by_face["matches"]] == [second_id]
    after = value(parse(client.get("/metrics").text), "facequeue_collection_search_seconds_count", via="face_id")
    assert after == searches + 1
    assert client.post("/v1/collections/staff/search", json={"face_id": "nope"}).status_code == 404

    # deleting a face, then the collection, leaves no row, vector or crop
    assert client.delete(f"/v1/collections/staff/faces/{second_id}").status_code == 204
    assert client.get("/v1/collections/staff").json()["face_count"] == 2
    assert len(_crop_files()) == 2
    assert client.delete(f"/v1/collections/staff/faces/{second_id}").status_code == 404
    assert client.delete("/v1/collections/staff").status_code == 204
    assert client.delete("/v1/collections/other").status_code == 204
    assert _stored_rows() == (0, 0)
    assert _crop_files() == []


def test_a_collection_deleted_before_the_run_fails_the_task_precisely(collections_client, start_worker) -> None:
    client = collections_client
    assert client.post("/v1/collections", json={"collection_id": "gone"}).status_code == 201
    task_id = client.post("/v1/detect", json={"img": _png(astronaut_bgr()), "index": {"collection_id": "gone"}}).json()[
        "detect_task_id"
    ]
    assert client.delete("/v1/collections/gone").status_code == 204
    start_worker()  # the run starts after the delete
    task = wait_for_final(client, task_id)
    assert task["status"] == "failed"
    assert task["error"] == {
        "code": "collection_not_found",
        "message": "Collection not found: collection gone was deleted",
    }
    assert _crop_files() == []


def _identities() -> dict[str, list[Path]]:
    people: dict[str, list[Path]] = {}
    with (SHARED_TESTDATA / "identity_labels.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["identity"] in ("john_salley", "john_savage"):
                people.setdefault(row["identity"], []).append(SHARED_TESTDATA / row["file"])
    return people


@pytest.mark.testdata
def test_the_two_johns_are_told_apart_by_search(collections_client, worker) -> None:
    """Each John's first 3 photos indexed; every other photo's best match is the right John (rank-1)."""
    client = collections_client
    assert client.post("/v1/collections", json={"collection_id": "johns"}).status_code == 201
    people = _identities()
    assert {name: len(files) for name, files in people.items()} == {"john_salley": 11, "john_savage": 11}
    for name, files in people.items():
        for path in files[:3]:
            image = cv2.imread(str(path))
            result = _detect(client, image, index={"collection_id": "johns", "external_id": name})
            assert len(result["index"]["indexed"]) == 1, (path, result["index"])
    right = 0
    for name, files in people.items():
        for path in files[3:]:
            result = _detect(client, cv2.imread(str(path)), search={"collection_id": "johns", "threshold": 0})
            best = max((face[0] for face in result["matches"]["0"] if face), key=lambda m: m["similarity"])
            right += best["external_id"] == name
    assert right == 16


def test_index_and_search_are_refused_in_an_uploads_query_string(collections_client) -> None:
    png = base64.b64decode(_png(astronaut_bgr()))
    for option in ("index", "search"):
        response = collections_client.post(
            f"/v1/detect?{option}=staff", content=png, headers={"content-type": "image/png"}
        )
        assert response.status_code == 422
        assert response.json()["error"]["field"] == option


def test_a_batchs_matches_say_in_which_files_and_at_which_times(collections_client, worker, tmp_path) -> None:
    client = collections_client
    assert client.post("/v1/collections", json={"collection_id": "staff"}).status_code == 201
    _detect(client, astronaut_bgr(), index={"collection_id": "staff", "external_id": "astronaut"})
    him = scene([Head("cameraman", 300, 60, 200)])
    _detect(client, him, index={"collection_id": "staff", "external_id": "cameraman"})
    clip = base64.b64encode(write_demo_video(tmp_path / "clip.mp4").read_bytes()).decode()
    items = [
        {"img": clip, "name": "clip.mp4"},
        {"img": _png(him), "name": "him.png"},
        {"img": _png(scene([])), "name": "nobody.png"},
    ]
    body = {"items": items, "search": {"collection_id": "staff"}}  # the batch's search: every item's
    batch_id = client.post("/v1/batches", json=body).json()["batch_id"]
    wait_until(
        lambda: client.get(f"/v1/batches/{batch_id}").json(),
        until=lambda batch: batch["status"] == "completed",
        timeout=120,
        what="batch completed",
    )

    def lines(**params) -> list[dict]:
        response = client.get(f"/v1/batches/{batch_id}/matches", params=params)
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in response.text.splitlines()]

    [astronaut] = lines(external_id="astronaut")
    assert (astronaut["position"], astronaut["name"]) == (0, "clip.mp4")
    # the clip's 5 sampled frames (num_frames' default), each with her face, at their times
    assert [match["frame_time"] for match in astronaut["matches"]] == [0.0, 0.6, 1.2, 1.8, 2.4]
    assert {match["external_id"] for match in astronaut["matches"]} == {"astronaut"}
    assert all(match["similarity"] >= 0.5 and match["index"] == 0 for match in astronaut["matches"])
    assert [(line["position"], line["name"]) for line in lines()] == [(0, "clip.mp4"), (1, "him.png")]
    [cameraman] = lines(external_id="cameraman")
    assert [(m["frame"], m["frame_time"], m["external_id"]) for m in cameraman["matches"]] == [("0", None, "cameraman")]
    assert lines(external_id="nobody") == []
    assert client.get("/v1/batches/bt_missing/matches").status_code == 404

    # the clip with persons: its one person is the astronaut, seen from the first sampled frame to the last
    video = client.post("/v1/detect", json={"img": clip, "persons": True, "search": {"collection_id": "staff"}})
    result = wait_for_final(client, video.json()["detect_task_id"])["result"]
    [person] = result["persons"]
    by_person = result["person_matches"]
    assert list(by_person) == [person["person_id"]]
    assert [m["external_id"] for m in by_person[person["person_id"]]["matches"]] == ["astronaut"]
    assert by_person[person["person_id"]]["time_ranges"] == [[0.0, 2.4]]


def _detect_task(client, image: np.ndarray, **options) -> str:
    task_id = client.post("/v1/detect", json={"img": _png(image), **options}).json()["detect_task_id"]
    assert wait_for_final(client, task_id)["status"] == "succeeded"
    return task_id


def _kept_embeddings(task_id: str) -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(TaskFaceEmbedding).where(TaskFaceEmbedding.task_id == task_id)
        )


def test_a_searched_tasks_unknown_face_is_indexed_without_a_model_run(collections_client, worker) -> None:
    client = collections_client
    assert client.post("/v1/collections", json={"collection_id": "staff"}).status_code == 201
    both = scene([Head("astronaut", 40, 60, 220), Head("cameraman", 400, 120, 120)])
    searched = _detect_task(client, both, search={"collection_id": "staff"}, return_face_url=True)
    assert _kept_embeddings(searched) == 2
    assert client.get(f"/v1/detect/{searched}").json()["result"]["matches"] == {"0": [[], []]}  # nobody known yet

    body = {"detect_task_id": searched, "faces": [["0", 1]], "external_id": "cameraman"}
    indexed = client.post("/v1/collections/staff/faces", json=body)
    assert indexed.status_code == 201
    report = indexed.json()
    assert (report["collection_id"], report["external_id"], report["unindexed"]) == ("staff", "cameraman", [])
    [face] = report["indexed"]
    assert (face["frame"], face["index"]) == ("0", 1)
    [listed] = client.get("/v1/collections/staff/faces").json()["items"]
    assert (listed["face_id"], listed["detect_task_id"], listed["region"]) == (
        face["face_id"],
        searched,
        client.get(f"/v1/detect/{searched}").json()["result"]["faces_obj"]["0"]["region"][1],
    )
    assert client.get(listed["face_url"]).content[:2] == b"\xff\xd8"  # the task's own crop, copied

    # the same photo searched again: the cameraman is now known, the astronaut still not
    again = _detect(client, both, search={"collection_id": "staff"})
    assert [[m["external_id"] for m in face] for face in again["matches"]["0"]] == [[], ["cameraman"]]

    missing = client.post("/v1/collections/staff/faces", json={**body, "faces": [["0", 5]]})
    assert missing.status_code == 422
    assert missing.json()["error"]["message"].startswith(
        f"detect task {searched} kept no embedding of the faces [['0', 5]]"
    )
    plain = _detect_task(client, both)  # no index or search option: nothing kept
    assert _kept_embeddings(plain) == 0
    assert client.post("/v1/collections/staff/faces", json={**body, "detect_task_id": plain}).status_code == 422

    # deleting the task's result deletes what it kept; the face it gave the collection stays
    assert client.delete(f"/v1/detect/{searched}").status_code == 200
    assert _kept_embeddings(searched) == 0
    gone = client.post("/v1/collections/staff/faces", json=body)
    assert gone.status_code == 404
    assert gone.json()["error"]["message"] == f"detect task {searched} not found"
    assert client.get("/v1/collections/staff").json()["face_count"] == 1
