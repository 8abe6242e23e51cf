"""Face collections through the client, against the real API over HTTP (uvicorn, Postgres with pgvector, Redis and
a real Celery worker): the collections' CRUD, and faces indexed and searched from local pictures (the astronaut and
the cameraman, tests/identity/support.py), which the client must send as base64 JSON."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from facequeue_client import (
    AsyncClient,
    Client,
    CollectionView,
    Conflict,
    Face,
    FaceMatch,
    FaceSearchResult,
    IndexedFace,
    IndexOptions,
    IndexReport,
    InvalidInput,
    NotFound,
    SearchOptions,
)

from tests.identity.support import Head, scene

pytestmark = pytest.mark.integration


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def test_collections_are_created_listed_read_and_deleted(client: Client) -> None:
    created = client.create_collection("staff", "the office")
    assert isinstance(created, CollectionView)
    assert (created.collection_id, created.description, created.face_count) == ("staff", "the office", 0)
    with pytest.raises(Conflict) as exists:
        client.create_collection("staff")
    error = exists.value
    assert (error.status, error.code, error.field) == (409, "collection_exists", "collection_id")
    assert error.message == "collection staff already exists"
    with pytest.raises(InvalidInput) as invalid:
        client.create_collection("no spaces")
    assert (invalid.value.status, invalid.value.field) == (422, "collection_id")

    for name in ("a-1", "b.2", "c_3"):
        assert client.create_collection(name).description is None
    before = client.request_count
    listed = client.list_collections(page_size=3)
    assert next(listed).collection_id == "a-1" and client.request_count == before + 1  # pages fetched lazily
    assert [c.collection_id for c in listed] == ["b.2", "c_3", "staff"] and client.request_count == before + 2

    assert client.get_collection("staff") == created
    assert client.delete_collection("staff") is None
    missing = [
        lambda: client.get_collection("staff"),
        lambda: client.delete_collection("staff"),
        lambda: list(client.list_faces("staff")),
        lambda: client.delete_face("staff", "nope"),
        lambda: client.search_faces("staff", "nope"),
        lambda: client.detect(b"not read", index={"collection_id": "staff"}),
    ]
    for call in missing:
        with pytest.raises(NotFound) as raised:
            call()
        assert (raised.value.status, raised.value.code) == (404, "not_found")
        assert raised.value.message == "collection staff not found"


def test_local_pictures_are_indexed_searched_and_their_faces_deleted(client: Client, worker, face_jpeg, tmp_path):
    client.create_collection("people")
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(face_jpeg)
    option = IndexOptions(collection_id="people", external_id="astronaut")
    astronaut_task = client.wait(client.detect(photo, index=option), timeout=90)
    report = astronaut_task.result.index
    assert isinstance(report, IndexReport) and report.unindexed == []
    assert (report.collection_id, report.external_id) == ("people", "astronaut")
    [astronaut] = report.indexed
    assert isinstance(astronaut, IndexedFace) and (astronaut.frame, astronaut.index) == ("0", 0)
    cameraman = scene([Head("cameraman", 300, 60, 200)])
    him = client.wait(client.detect(_png(cameraman), index={"collection_id": "people", "external_id": "cameraman"}), 90)
    [cameraman_face] = him.result.index.indexed

    assert client.get_collection("people").face_count == 2
    faces = list(client.list_faces("people", page_size=1))
    assert all(isinstance(face, Face) for face in faces)
    assert sorted(face.face_id for face in faces) == sorted([astronaut.face_id, cameraman_face.face_id])
    [hers] = client.list_faces("people", external_id="astronaut")
    assert (hers.face_id, hers.detect_task_id, hers.frame) == (astronaut.face_id, astronaut_task.detect_task_id, "0")
    assert len(hers.region) == 4 and hers.face_url

    # search by picture: the mirrored astronaut finds her, and only her
    mirrored = scene([Head("astronaut", 300, 60, 180, mirrored=True)])
    found = client.wait(client.detect(_png(mirrored), search=SearchOptions(collection_id="people")), timeout=90)
    assert found.result.index is None
    [[match]] = found.result.matches["0"]
    assert isinstance(match, FaceMatch) and (match.face_id, match.external_id) == (astronaut.face_id, "astronaut")
    assert 0.5 <= match.similarity <= 1

    # search by face id: the face itself left out; the cameraman is below the default threshold
    alike = client.search_faces("people", astronaut.face_id)
    assert alike == FaceSearchResult(face_id=astronaut.face_id, matches=[])
    anyone = client.search_faces("people", astronaut.face_id, threshold=0, max_matches=1)
    assert [(m.face_id, m.external_id) for m in anyone.matches] == [(cameraman_face.face_id, "cameraman")]

    # the searched task's face, indexed afterwards from the embedding kept with it: no model run
    again = client.index_faces_from_task("people", found, [(0, 0)], external_id="astronaut-mirrored")
    assert isinstance(again, IndexReport) and again.unindexed == []
    [kept] = again.indexed
    assert (kept.frame, kept.index) == ("0", 0)
    [mirrored_face] = client.list_faces("people", external_id="astronaut-mirrored")
    assert (mirrored_face.face_id, mirrored_face.detect_task_id) == (kept.face_id, found.detect_task_id)
    assert client.delete_face("people", kept.face_id) is None

    assert client.delete_face("people", cameraman_face.face_id) is None
    with pytest.raises(NotFound) as gone:
        client.delete_face("people", cameraman_face.face_id)
    assert gone.value.message == f"face {cameraman_face.face_id} not found in collection people"
    assert client.get_collection("people").face_count == 1


@pytest.mark.anyio
async def test_async_client_manages_indexes_and_searches(live_api: str, api_key: str, worker, face_jpeg) -> None:
    async with AsyncClient(live_api, api_key, timeout=10) as client:
        created = await client.create_collection("crew", description="on board")
        assert [c async for c in client.list_collections()] == [created]
        with pytest.raises(Conflict):
            await client.create_collection("crew")
        accepted = await client.detect(face_jpeg, index={"collection_id": "crew", "external_id": "astronaut"})
        indexed = await client.wait(accepted, timeout=90)
        [face] = indexed.result.index.indexed
        listed = [f.face_id async for f in client.list_faces("crew", external_id="astronaut")]
        assert listed == [face.face_id]
        assert [f async for f in client.list_faces("crew", external_id="nobody")] == []
        searched = await client.wait(await client.detect(face_jpeg, search={"collection_id": "crew"}), timeout=90)
        [[match]] = searched.result.matches["0"]
        assert (match.face_id, match.external_id) == (face.face_id, "astronaut") and match.similarity > 0.9
        assert (await client.search_faces("crew", face.face_id)).matches == []
        with pytest.raises(InvalidInput) as not_kept:  # its own search kept only face [0, 0]
            await client.index_faces_from_task("crew", searched, [("0", 3)])
        assert not_kept.value.field == "faces"
        await client.delete_face("crew", face.face_id)
        assert (await client.get_collection("crew")).face_count == 0
        await client.delete_collection("crew")
        with pytest.raises(NotFound):
            await client.get_collection("crew")
