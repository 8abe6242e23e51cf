"""Tracking real faces across sparse samples: stable ids, `removed`, cuts, returning people, few embeddings."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from facequeue.cli.demo import moving_face_frames, write_video
from tests.identity.support import (
    Head,
    VideoTracking,
    cameraman_bgr,
    detections,
    sampled_detections,
    scene,
    track_frames,
)
from workers.identity.embedder import get_embedder
from workers.identity.tracking import FrameDetections
from workers.results import region


def _track(frames: Iterable[FrameDetections]) -> VideoTracking:
    return track_frames(frames, get_embedder().embed)


def test_two_faces_in_a_demo_video_keep_their_tracks(tmp_path: Path) -> None:
    video = write_video(tmp_path / "two.mp4", moving_face_frames(faces=2))
    tracking = _track(sampled_detections(video, 10))

    assert len(tracking.frames) == 10
    assert [frame.track_ids for frame in tracking.frames] == [[0, 1]] * 10  # faces in x order
    assert all(frame.removed == [] for frame in tracking.frames)
    # The right head is the left one mirrored, which SFace sees as the same person: only
    # being in the same frames keeps them two persons.
    assert [len(person.appearances) for person in tracking.persons] == [10, 10]
    assert tracking.person_of_track == {0: "person_0", 1: "person_1"}
    assert tracking.detections == 20
    assert tracking.embeddings == 4  # one view per track at its start, one more at its 4th sighting


def test_a_face_that_leaves_is_removed_in_the_next_sample_only() -> None:
    images = [
        scene([Head("astronaut", 40, 100), Head("cameraman", 400, 100)]),
        scene([Head("astronaut", 50, 100), Head("cameraman", 410, 105)]),
        scene([Head("astronaut", 60, 100)]),
        scene([Head("astronaut", 70, 100)]),
    ]
    frames = detections(images, step=10)
    tracking = _track(frames)

    assert [frame.track_ids for frame in tracking.frames] == [[0, 1], [0, 1], [0], [0]]
    cameraman_before = frames[1].faces[1]
    assert [frame.removed for frame in tracking.frames] == [[], [], [region(cameraman_before)], []]
    assert tracking.embeddings < tracking.detections


def test_a_person_returning_after_a_cut_gets_their_track_back() -> None:
    unrelated = np.zeros((360, 640, 3), np.uint8)
    unrelated[:, 140:500] = cv2.resize(cameraman_bgr(), (360, 360), interpolation=cv2.INTER_AREA)
    images = [
        scene([Head("astronaut", 40, 100)]),
        scene([Head("astronaut", 60, 110)]),
        scene([Head("astronaut", 80, 120)]),
        unrelated,  # another shot: the cameraman's photo
        scene([Head("astronaut", 420, 20, height=220)]),  # back, elsewhere and bigger
        scene([Head("astronaut", 410, 25, height=220)]),
    ]
    frames = detections(images, step=25)
    tracking = _track(frames)

    assert [frame.cut for frame in tracking.frames] == [False, False, False, True, True, False]
    assert [frame.track_ids for frame in tracking.frames] == [[0], [0], [0], [1], [0], [0]]
    assert tracking.frames[3].removed == [region(frames[2].faces[0])]
    assert tracking.frames[4].removed == [region(frames[3].faces[0])]
    astronaut, cameraman = tracking.persons
    assert [a.frame_idx for a in astronaut.appearances] == [0, 25, 50, 100, 125]
    assert [a.frame_idx for a in cameraman.appearances] == [75]
    assert astronaut.face.frame_idx in (100, 125)  # the biggest view is the one to crop
    assert tracking.embeddings < tracking.detections


def test_a_different_face_where_one_stood_starts_a_new_track() -> None:
    images = [
        scene([Head("astronaut", 100, 100)]),
        scene([Head("astronaut", 100, 100)]),
        scene([Head("cameraman", 100, 100)]),  # same place, same background: no cut, another person
    ]
    frames = detections(images, step=25)
    tracking = _track(frames)

    assert [frame.track_ids for frame in tracking.frames] == [[0], [0], [1]]
    assert tracking.frames[2].removed == [region(frames[1].faces[0])]
    assert len(tracking.persons) == 2


def test_nothing_in_nothing_out() -> None:
    blank = scene([])
    tracking = _track(detections([blank, blank]))
    assert [(frame.track_ids, frame.removed) for frame in tracking.frames] == [([], []), ([], [])]
    assert tracking.persons == [] and tracking.embeddings == 0


def test_an_unidentifiable_face_seen_once_is_no_person() -> None:
    # Squeezed to 16:9, the cameraman's face embeds with norm 6.8: too distorted to say who it is,
    # like the detector's false positives, which also show up in a single sample.
    squeezed = cv2.resize(cameraman_bgr(), (640, 360), interpolation=cv2.INTER_AREA)
    tracking = _track(detections([scene([Head("astronaut", 40, 100)]), squeezed, scene([Head("astronaut", 40, 100)])]))

    assert [frame.track_ids for frame in tracking.frames] == [[0], [1], [0]]
    assert tracking.person_of_track == {0: "person_0"}
    assert [len(person.appearances) for person in tracking.persons] == [2]
