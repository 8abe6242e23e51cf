"""Face collections through the client, against the real API over HTTP (uvicorn, Postgres with pgvector, Redis and
a real Celery worker): the collections' CRUD, faces indexed and searched from local pictures (the astronaut and
the cameraman, tests/identity/support.py), which the client must send as base64 JSON, and a batch's matches
on real people's photos and a clip (../shared/testdata)."""

from __future__ import annotations

import asyncio
import base64
import csv
from pathlib import Path

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
from facequeue_client.models import BatchItemMatches, BatchPerson, ItemMatch

from tests.conftest import SHARED_TESTDATA
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


def _photos_of(*people: str) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {name: [] for name in people}
    with (SHARED_TESTDATA / "identity_labels.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["identity"] in found:
                found[row["identity"]].append(SHARED_TESTDATA / row["file"])
    return found


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _where(line: BatchItemMatches) -> list[tuple[str, float | None, int, str, str | None]]:
    return [(m.frame, m.frame_time, m.index, m.face_id, m.external_id) for m in line.matches]


async def _matches_async(live_api: str, api_key: str, batch_id: str, external_id: str) -> list[BatchItemMatches]:
    async with AsyncClient(live_api, api_key, timeout=10) as client:
        with pytest.raises(NotFound) as missing:
            [line async for line in client.batch_matches("bt_missing")]
        assert (missing.value.field, missing.value.message) == ("batch_id", "batch bt_missing not found")
        return [line async for line in client.batch_matches(batch_id, external_id=external_id)]


@pytest.mark.testdata
def test_a_batchs_matches_say_which_items_and_frames_met_whom(client: Client, live_api, api_key, worker, tmp_path):
    """Two Johns indexed from one photo each, Katie Hill from a still of her clip; a batch searched in the collection
    finds each John in his other photo and her in each of her clip's 3 sampled frames; the dogs match no one."""
    client.create_collection("people")
    johns = _photos_of("john_salley", "john_savage")
    clip = SHARED_TESTDATA / "videos" / "sadtalker_WDA_KatieHill_000.mp4"
    capture = cv2.VideoCapture(str(clip))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)  # a frame the batch does not sample (it samples 0, 66, 133)
    still = tmp_path / "katie.jpg"
    cv2.imwrite(str(still), capture.read()[1])
    capture.release()
    face_ids = {}
    for person, photo in [("john_salley", johns["john_salley"][0]), ("john_savage", johns["john_savage"][0])]:
        indexed = client.wait(client.detect(photo, index={"collection_id": "people", "external_id": person}), 120)
        [face_ids[person]] = [face.face_id for face in indexed.result.index.indexed]
    indexed = client.wait(client.detect(still, index={"collection_id": "people", "external_id": "katie_hill"}), 120)
    [face_ids["katie_hill"]] = [face.face_id for face in indexed.result.index.indexed]

    items = [
        {"img": _b64(johns["john_savage"][3]), "name": "savage.jpg"},
        {"img": _b64(SHARED_TESTDATA / "dlib" / "examples" / "faces" / "dogs.jpg"), "name": "dogs.jpg"},
        {"img": _b64(clip), "name": "katie.mp4", "num_frames": 3},
        {"img": _b64(johns["john_salley"][3]), "name": "salley.jpg"},
    ]
    batch = client.submit_batch(items, search=SearchOptions(collection_id="people", max_matches=2))
    assert client.wait_batch(batch.batch_id, timeout=300).counts["succeeded"] == 4
    results = list(client.batch_results(batch.batch_id))
    task_ids = [line.detect_task_id for line in results]
    assert results[1].result.matches == {"0": [[], []]}  # two faces found among the dogs, each matching no one
    savage, katie, salley = face_ids["john_savage"], face_ids["katie_hill"], face_ids["john_salley"]

    lines = list(client.batch_matches(batch.batch_id))
    assert all(isinstance(line, BatchItemMatches) for line in lines)
    assert all(
        isinstance(match, ItemMatch) and 0.5 <= match.similarity <= 1 for line in lines for match in line.matches
    )
    # an item without a match has no line; each other item matched its own person only (of the 2 asked for)
    assert [(line.position, line.name, line.detect_task_id) for line in lines] == [
        (0, "savage.jpg", task_ids[0]),
        (2, "katie.mp4", task_ids[2]),
        (3, "salley.jpg", task_ids[3]),
    ]
    assert [_where(line) for line in lines] == [
        [("0", None, 0, savage, "john_savage")],
        [
            ("0", 0.0, 0, katie, "katie_hill"),
            ("66", 2.64, 0, katie, "katie_hill"),
            ("133", 5.32, 0, katie, "katie_hill"),
        ],
        [("0", None, 0, salley, "john_salley")],
    ]
    [hers] = client.batch_matches(batch.batch_id, external_id="katie_hill")
    assert hers == lines[1]
    [his] = client.batch_matches(batch.batch_id, "john_salley")
    assert his == lines[2]
    assert list(client.batch_matches(batch.batch_id, external_id="nobody")) == []
    with pytest.raises(NotFound) as missing:
        list(client.batch_matches("bt_missing"))
    assert (missing.value.status, missing.value.field) == (404, "batch_id")
    assert missing.value.message == "batch bt_missing not found"

    assert asyncio.run(_matches_async(live_api, api_key, batch.batch_id, "katie_hill")) == [hers]


def test_a_batchs_persons_through_the_client(client: Client, live_api, api_key, worker) -> None:
    """Her face in two photos and his in one, sent as JSON and as a JSONL manifest with persons=True: two batch
    persons, hers with both photos; a batch sent without persons has none to give."""
    her, her_smaller = _png(scene([Head("astronaut", 200, 60, 220)])), _png(scene([Head("astronaut", 60, 150, 150)]))
    him = _png(scene([Head("cameraman", 300, 60, 200)]))
    items = [
        {"img": base64.b64encode(image).decode(), "name": name}
        for image, name in [(her, "her.png"), (him, "him.png"), (her_smaller, "her-smaller.png")]
    ]
    for batch in (client.submit_batch(items, persons=True), client.stream_batch(iter(items), persons=True)):
        status = client.wait_batch(batch.batch_id, timeout=300)
        assert (status.persons, status.counts["succeeded"]) == (True, 3)
        persons = list(client.batch_persons(batch.batch_id))
        assert all(isinstance(person, BatchPerson) for person in persons)
        assert [[(item.position, item.name, item.person_id) for item in person.items] for person in persons] == [
            [(0, "her.png", "person_0"), (2, "her-smaller.png", "person_0")],
            [(1, "him.png", "person_0")],
        ]
        assert persons[0].items[0].time_ranges == [[0.0, 0.0]]
    assert asyncio.run(_persons_async(live_api, api_key, batch.batch_id)) == persons

    plain = client.submit_batch(items[:1])
    assert client.batch_status(plain.batch_id).persons is False
    with pytest.raises(Conflict) as refused:
        list(client.batch_persons(plain.batch_id))
    assert (refused.value.status, refused.value.code) == (409, "persons_not_requested")


async def _persons_async(live_api: str, api_key: str, batch_id: str) -> list[BatchPerson]:
    async with AsyncClient(live_api, api_key) as client:
        return [person async for person in client.batch_persons(batch_id)]
