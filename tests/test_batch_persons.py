"""Batch-wide persons (`persons: true` at batch level) and the batch-level `search`, on real Postgres + pgvector and
a real worker: the same face across items is one batch person, whether it reached its neighbours as they finished
or only at the batch's end; the shared single-face clips (CI) are one person each, and two clips cut from one are
one person."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from db.face_models import BatchItemPerson, TaskFaceEmbedding
from facequeue.cli.demo import astronaut_bgr, write_demo_video, write_video
from facequeue.plumbing.sessions import session_scope
from tests.conftest import SHARED_TESTDATA
from tests.identity.support import Head, scene
from tests.support import wait_until
from tests.test_tenants import bearer, make_client, new_key

pytestmark = pytest.mark.integration

VIDEOS = SHARED_TESTDATA / "videos"


def _png(image: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()


def _file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _completed(client, body: dict, timeout: float = 120) -> str:
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 202, response.text
    batch_id = response.json()["batch_id"]
    wait_until(
        lambda: client.get(f"/v1/batches/{batch_id}").json(),
        until=lambda batch: batch["status"] == "completed",
        timeout=timeout,
        what="batch completed",
    )
    return batch_id


def _persons(client, batch_id: str) -> list[dict]:
    response = client.get(f"/v1/batches/{batch_id}/persons")
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def _rows(**where) -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(BatchItemPerson).filter_by(**where)
        return session.scalar(query)


def test_the_same_face_across_items_is_one_batch_person(api_client, worker, tmp_path) -> None:
    """Her face in 3 items (a clip and two photos): the third finds two neighbours and all three join at once. His
    face in 2 items: neither ever has two neighbours, so they join at the batch's end. A photo of nobody adds none."""
    client = api_client
    clip = write_demo_video(tmp_path / "her.mp4")
    him = scene([Head("cameraman", 300, 60, 200)])
    him_smaller = scene([Head("cameraman", 100, 120, 160)])
    items = [
        {"img": _file(clip), "name": "her.mp4"},
        {"img": _png(him), "name": "him.png"},
        {"img": _png(astronaut_bgr()), "name": "her.png"},
        {"img": _png(scene([])), "name": "nobody.png"},
        {"img": _png(him_smaller), "name": "him-smaller.png"},
        {"img": _png(cv2.resize(astronaut_bgr(), (384, 384))), "name": "her-smaller.png"},
    ]
    batch_id = _completed(client, {"items": items, "persons": True})
    assert client.get(f"/v1/batches/{batch_id}").json()["persons"] is True

    her, his = _persons(client, batch_id)
    assert [(item["position"], item["name"], item["person_id"]) for item in her["items"]] == [
        (0, "her.mp4", "person_0"),
        (2, "her.png", "person_0"),
        (5, "her-smaller.png", "person_0"),
    ]
    # the clip's 5 sampled frames, her face in each: one run; a photo is one instant
    assert [item["time_ranges"] for item in her["items"]] == [[[0.0, 2.4]], [[0.0, 0.0]], [[0.0, 0.0]]]
    assert [(item["position"], item["name"]) for item in his["items"]] == [(1, "him.png"), (4, "him-smaller.png")]
    assert her["batch_person_id"] != his["batch_person_id"]
    assert all(person["batch_person_id"].startswith("bp_") for person in (her, his))
    # every item ran with persons, and names its persons in its own result as the batch lines do
    results = [json.loads(line) for line in client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert [len(line["result"]["persons"]) for line in results] == [1, 1, 1, 0, 1, 1]
    assert _rows(batch_id=batch_id, batch_person_id=None) == 0
    # a person's mean is kept, not each face's embedding (only index and search keep those, to index later)
    with session_scope() as session:
        task_ids = [line["detect_task_id"] for line in results]
        kept = select(func.count()).where(TaskFaceEmbedding.task_id.in_(task_ids))
        assert session.scalar(kept) == 0

    # an item's deletion takes its persons' embeddings with it
    her_photo = her["items"][1]["detect_task_id"]
    assert _rows(task_id=her_photo) == 1
    assert client.delete(f"/v1/detect/{her_photo}").status_code in (200, 204)
    assert _rows(task_id=her_photo) == 0
    assert [item["name"] for item in _persons(client, batch_id)[0]["items"]] == ["her.mp4", "her-smaller.png"]


def test_batch_level_options_are_checked_before_anything_is_stored(api_client) -> None:
    client = api_client
    photo = {"img": _png(astronaut_bgr())}

    def refused(body: dict) -> dict:
        response = client.post("/v1/batches", json=body)
        assert response.status_code == 422, response.text
        return response.json()["error"]

    assert refused({"items": [photo], "persons": "yes"}) == {
        "code": "validation_error",
        "message": "persons must be true or false",
        "field": "persons",
    }
    assert refused({"items": [photo], "search": "staff"})["field"] == "search"
    assert refused({"items": [photo], "search": {"collection_id": "staff", "threshold": 2}})["field"] == (
        "search.threshold"
    )
    both = {"items": [photo], "search": {"collection_id": "staff"}, "defaults": {"search": {"collection_id": "x"}}}
    assert refused(both) == {
        "code": "validation_error",
        "message": "search is given at batch level and in defaults: give it once",
        "field": "search",
    }
    own = {"items": [{**photo, "search": {"collection_id": "x"}}], "search": {"collection_id": "staff"}}
    assert refused(own)["field"] == "items[0].search"
    # the batch's search names a collection the caller does not have: refused like an item's own
    missing = client.post("/v1/batches", json={"items": [photo], "search": {"collection_id": "nowhere"}})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "items[0].search.collection_id"

    # a JSONL manifest takes the same as query parameters
    manifest = {"content": json.dumps(photo) + "\n", "headers": {"content-type": "application/x-ndjson"}}
    searched = client.post("/v1/batches", params={"search": '{"collection_id": "nowhere"}'}, **manifest)
    assert searched.status_code == 404 and searched.json()["error"]["field"] == "items[0].search.collection_id"
    not_json = client.post("/v1/batches", params={"search": "nowhere"}, **manifest)
    assert (not_json.status_code, not_json.json()["error"]["field"]) == (422, "search")
    with_persons = client.post("/v1/batches", params={"persons": "true"}, **manifest).json()["batch_id"]
    assert client.get(f"/v1/batches/{with_persons}").json()["persons"] is True

    plain = client.post("/v1/batches", json={"items": [photo]}).json()["batch_id"]
    assert client.get(f"/v1/batches/{plain}").json()["persons"] is False
    response = client.get(f"/v1/batches/{plain}/persons")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "persons_not_requested",
        "message": f"batch {plain} was not submitted with persons: true, so it has no batch-wide persons",
        "field": "batch_id",
    }
    assert client.get("/v1/batches/bt_missing/persons").status_code == 404


def test_a_tenant_never_sees_another_tenants_batch_persons(clean_state) -> None:
    with make_client() as client:
        alice, bob = bearer(new_key("alice")), bearer(new_key("bob"))
        body = {"items": [{"img": _png(astronaut_bgr())}], "persons": True}
        batch_id = client.post("/v1/batches", json=body, headers=alice).json()["batch_id"]
        assert client.get(f"/v1/batches/{batch_id}/persons", headers=bob).status_code == 404
        assert client.get(f"/v1/batches/{batch_id}/persons", headers=alice).status_code == 200


def _halves(source: Path, folder: Path) -> list[Path]:
    """The clip cut in two at its middle frame: two clips of one actor."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        fps = round(float(stream.average_rate))
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    middle = len(frames) // 2
    return [
        write_video(folder / f"{source.stem}-first.mp4", frames[:middle], fps),
        write_video(folder / f"{source.stem}-second.mp4", frames[middle:], fps),
    ]


@pytest.mark.testdata
def test_the_shared_single_face_clips_are_one_batch_person_each(api_client, worker, tmp_path) -> None:
    """Nine single-face clips, and the tenth cut in two: ten batch persons, the two halves one of them."""
    clips = sorted(VIDEOS.glob("liveportrait_*.mp4")) + sorted(VIDEOS.glob("sadtalker_*.mp4"))
    assert len(clips) == 10
    halved = clips.pop()
    items = [{"img": _file(path), "name": path.name} for path in clips + _halves(halved, tmp_path)]
    batch_id = _completed(api_client, {"items": items, "persons": True}, timeout=600)

    persons = _persons(api_client, batch_id)
    names = sorted(sorted(item["name"] for item in person["items"]) for person in persons)
    halves = [f"{halved.stem}-first.mp4", f"{halved.stem}-second.mp4"]
    assert names == sorted([[path.name] for path in clips] + [halves])
    # and each clip is one person in its own result
    results = [json.loads(line) for line in api_client.get(f"/v1/batches/{batch_id}/results").text.splitlines()]
    assert [len(line["result"]["persons"]) for line in results] == [1] * 11
