"""A video's frames through the detector several at once (FACEQUEUE_FRAME_BATCH, the models' batch axis): the
very faces frame by frame detection finds, in the model, in the task's analyzer and through a real worker."""

from __future__ import annotations

import numpy as np
import pytest

from facequeue.cli.demo import Placement, compose, moving_face_frames, write_video
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import get_settings
from facequeue.core.storage import get_storage
from tests.support import wait_for_final
from workers.detectors.fusion import detect_faces_tiled
from workers.detectors.registry import get_detector
from workers.frame_analyzer import FrameAnalyzer
from workers.identity.embedder import SFaceEmbedder
from workers.media.video import SampledFrame
from workers.recognition import FaceRecognition
from workers.vision import BatchedDetector, detect_faces, detect_faces_in_frames

FACES = 2  # heads per frame: the model's batch must keep each frame's faces apart
FRAMES = moving_face_frames(count=6, width=960, height=540, faces=FACES)  # above max_side: the working size applies


def _faces(found) -> list[list[tuple]]:
    return [[(face.box, face.landmarks.tolist(), face.score) for face in faces] for faces in found]


@pytest.mark.parametrize("name", ["yunet", "centerface"])
def test_frames_through_the_batch_axis_get_the_faces_of_frame_by_frame_detection(name) -> None:
    detector = get_detector(name)
    assert isinstance(detector, BatchedDetector)
    one_by_one = [detect_faces(detector, frame, 640) for frame in FRAMES]
    assert [len(faces) for faces in one_by_one] == [FACES] * len(FRAMES)
    assert _faces(detect_faces_in_frames(detector, FRAMES, 640)) == _faces(one_by_one)


def test_frames_of_different_sizes_are_detected_one_by_one() -> None:
    detector = get_detector("yunet")
    frames = [FRAMES[0], FRAMES[1][:400, :800]]
    assert _faces(detect_faces_in_frames(detector, frames, 640)) == _faces(
        [detect_faces(detector, frame, 640) for frame in frames]
    )


@pytest.mark.parametrize(
    "options",
    [{}, {"single_face": True}, {"detector": "accurate"}, {"persons": True}],
    ids=["default", "single_face", "accurate", "persons"],
)
def test_the_analyzer_records_a_batch_as_it_records_frame_after_frame(options) -> None:
    settings = get_settings()
    sampled = [SampledFrame(index, index / 25, frame, 1, (960, 540)) for index, frame in enumerate(FRAMES)]

    def analyzed(batch: int) -> FrameAnalyzer:
        analyzer = FrameAnalyzer("t", DetectOptions(**options), settings, get_storage(settings), True, ())
        for start in range(0, len(sampled), batch):
            analyzer.add_frames(sampled[start : start + batch])
        return analyzer

    single, batched = analyzed(1), analyzed(4)
    dump = {key: entry.model_dump() for key, entry in single.faces_obj.items()}
    assert {key: entry.model_dump() for key, entry in batched.faces_obj.items()} == dump
    assert batched.scores == single.scores
    assert [len(faces) for faces in single.scores.values()] == [1 if options.get("single_face") else FACES] * 6
    assert batched.router.served_by == single.router.served_by
    assert batched.router.served == single.router.served  # every frame counted once
    if options.get("persons"):
        assert [p.index for p in batched.tracker.persons()[0]] == [p.index for p in single.tracker.persons()[0]]


@pytest.mark.integration
def test_a_worker_batching_frames_gives_the_result_of_one_detecting_frame_by_frame(
    api_client, start_worker, tmp_path
) -> None:
    video = write_video(tmp_path / "clip.mp4", moving_face_frames(count=30, faces=FACES)).read_bytes()
    query = {"num_frames": 10, "persons": "true"}  # 10 frames: batches of 4, 4 and 2

    def run_on(**env: str) -> dict:
        worker = start_worker(**env)
        response = api_client.post("/v1/detect", params=query, content=video, headers={"Content-Type": "video/mp4"})
        task = wait_for_final(api_client, response.json()["detect_task_id"], timeout=120)
        worker.stop()
        return task

    batched, single = run_on(FACEQUEUE_FRAME_BATCH="4"), run_on(FACEQUEUE_FRAME_BATCH="1")
    assert (batched["status"], batched["progress"]) == ("succeeded", {"done": 10, "total": 10})
    assert [len(frame["region"]) for frame in batched["result"]["faces_obj"].values()] == [FACES] * 10
    assert len(batched["result"]["persons"]) == FACES
    for key in ("faces_obj", "scores", "frame_count"):
        assert batched["result"][key] == single["result"][key]
    assert np.array_equal(
        [person["bbox"] for person in batched["result"]["persons"]],
        [person["bbox"] for person in single["result"]["persons"]],
    )


def test_tiles_through_the_batch_axis_get_the_faces_of_tile_by_tile_detection() -> None:
    # 64 px heads across 2560 px: the frame downscaled to 640 loses them, only the 5 tiles find them
    wide = compose(2560, 480, [Placement(60 + 300 * k, 150 + 40 * (k % 3), 64, mirrored=k % 2 == 1) for k in range(8)])
    detector = get_detector("yunet")
    one_by_one = detect_faces_tiled(detector, wide, 640)
    assert (len(detect_faces(detector, wide, 640)), len(one_by_one)) == (0, 8)
    for batch in (2, 8):  # a short last chunk, and every tile at once
        assert _faces([detect_faces_tiled(detector, wide, 640, batch=batch)]) == _faces([one_by_one])


def test_a_persons_batch_video_embeds_each_face_once_for_the_tracker_and_recognition(monkeypatch) -> None:
    """The tracker embeds some faces to follow identities; recognition (here: a batch's persons) needs every face's
    embedding. A face the tracker embedded is not embedded again."""
    calls = []
    embed = SFaceEmbedder.embed
    monkeypatch.setattr(SFaceEmbedder, "embed", lambda self, *args: calls.append(1) or embed(self, *args))
    settings = get_settings()
    options = DetectOptions(persons=True)
    recognition = FaceRecognition("t", options, get_storage(settings), None, None, persons_batch_id="b")
    analyzer = FrameAnalyzer("t", options, settings, get_storage(settings), True, (), recognition)
    analyzer.add_frames([SampledFrame(index, index / 25, frame, 1, (960, 540)) for index, frame in enumerate(FRAMES)])
    assert [len(recognition.faces[str(index)]) for index in range(len(FRAMES))] == [FACES] * len(FRAMES)
    assert analyzer.tracker.embeddings >= FACES  # the tracker embedded at least each face of the first frame
    assert len(calls) == FACES * len(FRAMES)
