"""90-point groups and the refined 6 points against the iBUG 68-point truth of the dlib photos in ../shared/testdata.

Errors are normalised by the inter-ocular distance: between the truth's eye centres (means of iBUG 36-41 and
42-47). The faces are small (inter-ocular 11-43 px, median 15 px), so one pixel is 0.02-0.09 of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from facequeue.core.settings import get_settings
from tests.conftest import SHARED_TESTDATA
from workers.landmarks.analyze import AnalysedFace
from workers.landmarks.shape90 import MESH_GROUPS, five_points
from workers.media.image import decode_image
from workers.vision import six_points

pytestmark = pytest.mark.testdata

MATCH_IOU = 0.4

# Where each group belongs in iBUG's 68 points.
IBUG_REGIONS = {
    "face_profile": range(0, 17),
    "left_eye_brow": range(17, 22),
    "right_eye_brow": range(22, 27),
    "nose": range(27, 36),
    "left_eye": range(36, 42),
    "right_eye": range(42, 48),
    "mouth": range(48, 68),
}

# Mean over the 43 faces of each group's distance to its iBUG region (measured value in the comment).
MEAN_ERROR_BOUNDS = {
    "face_profile": 0.15,  # 0.121: MediaPipe's face oval runs a little outside iBUG's jaw line
    "left_eye": 0.09,  # 0.066
    "right_eye": 0.09,  # 0.071
    "left_eye_brow": 0.10,  # 0.081
    "right_eye_brow": 0.10,  # 0.080
    "mouth": 0.08,  # 0.065
    "nose": 0.14,  # 0.115: the loop's side points lie on the nose wall, which iBUG does not mark
    "pupils": 0.07,  # 0.053, against iBUG's eye centres
}
# Every single face: the group lands in its region (worst measured: profile 0.36, other groups 0.23).
FACE_ERROR_BOUND = {"face_profile": 0.5}
DEFAULT_FACE_ERROR_BOUND = 0.3

SIX_POINT_NME_BOUND = 0.07  # measured 0.059; the target is 0.08
YUNET_SIX_POINT_NME_BOUND = 0.17  # measured 0.148 for the detector's own points on these small faces


@dataclass(frozen=True)
class MatchedFace:
    shape: AnalysedFace
    landmarks68: np.ndarray

    @property
    def eye_centres(self) -> np.ndarray:
        return np.array([self.landmarks68[36:42].mean(axis=0), self.landmarks68[42:48].mean(axis=0)])

    @property
    def inter_ocular(self) -> float:
        left, right = self.eye_centres
        return float(np.linalg.norm(right - left))

    def region_error(self, points: np.ndarray, region: range) -> float:
        """Mean distance from each point to the nearest truth point of the region, over inter-ocular."""
        truth = self.landmarks68[list(region)]
        return float(np.linalg.norm(points[:, None] - truth[None], axis=2).min(axis=1).mean()) / self.inter_ocular

    def six_point_nme(self, six: np.ndarray) -> float:
        """Seed order: eyes, nose tip (iBUG 30), mouth centre, mouth corners (iBUG 48, 54)."""
        corners = self.landmarks68[[48, 54]]
        truth = np.vstack([self.eye_centres, self.landmarks68[30], corners.mean(axis=0), corners])
        return float(np.linalg.norm(six - truth, axis=1).mean()) / self.inter_ocular


def _iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def matched_faces(analyzer) -> list[MatchedFace]:
    entries = json.loads((SHARED_TESTDATA / "ground_truth_faces.json").read_text())
    matched = []
    for entry in (entry for entry in entries if entry["file"].startswith("dlib/")):
        shapes = analyzer.shapes(decode_image(SHARED_TESTDATA / entry["file"], get_settings()))
        for truth in entry["faces"]:
            best = max(shapes, key=lambda shape: _iou(shape.face.box, truth["box_xywh"]), default=None)
            assert best is not None and _iou(best.face.box, truth["box_xywh"]) >= MATCH_IOU, (entry["file"], truth)
            matched.append(MatchedFace(best, np.array(truth["landmarks68"], dtype=np.float64)))
    assert len(matched) == 43  # every labelled face is found and passes the presence filter
    return matched


def _group_errors(face: MatchedFace) -> dict[str, float]:
    errors = {
        name: face.region_error(face.shape.mesh.points[list(indices)], IBUG_REGIONS[name])
        for name, indices in MESH_GROUPS.items()
    }
    errors["pupils"] = float(np.linalg.norm(face.shape.pupils - face.eye_centres, axis=1).mean()) / face.inter_ocular
    return errors


def test_each_group_lands_in_its_ibug_region(matched_faces: list[MatchedFace]) -> None:
    for face in matched_faces:
        for name, error in _group_errors(face).items():
            assert error <= FACE_ERROR_BOUND.get(name, DEFAULT_FACE_ERROR_BOUND), (name, face.shape.face.box, error)


def test_each_group_is_nearer_its_own_region_than_any_other(matched_faces: list[MatchedFace]) -> None:
    # On faces this small a brow and its eye are 2-3 px apart, so allow one confusion in the 43 faces.
    confused = []
    for face in matched_faces:
        for name, indices in MESH_GROUPS.items():
            points = face.shape.mesh.points[list(indices)]
            nearest = min(IBUG_REGIONS, key=lambda region: face.region_error(points, IBUG_REGIONS[region]))
            if nearest != name:
                confused.append((name, nearest, face.shape.face.box))
    assert len(confused) <= 1, confused


def test_mean_error_per_group(matched_faces: list[MatchedFace]) -> None:
    per_face = [_group_errors(face) for face in matched_faces]
    means = {name: float(np.mean([errors[name] for errors in per_face])) for name in MEAN_ERROR_BOUNDS}
    print("mean error per group / inter-ocular:", {name: round(mean, 3) for name, mean in means.items()})
    for name, bound in MEAN_ERROR_BOUNDS.items():
        assert means[name] <= bound, (name, means)


def test_six_point_nme(matched_faces: list[MatchedFace]) -> None:
    refined, detector = [], []
    for face in matched_faces:
        refined.append(face.six_point_nme(six_points(five_points(face.shape.mesh.points, face.shape.pupils))))
        yunet = face.shape.face.landmarks  # eyes, nose tip, mouth corners
        from_yunet = np.vstack([yunet[:3], yunet[3:].mean(axis=0), yunet[3:]])
        detector.append(face.six_point_nme(from_yunet))
    print(f"6-point NME: FaceMesh + Iris {np.mean(refined):.3f}, YuNet {np.mean(detector):.3f}")
    assert np.mean(refined) <= SIX_POINT_NME_BOUND
    assert np.mean(detector) <= YUNET_SIX_POINT_NME_BOUND
    assert np.mean(refined) < 0.5 * np.mean(detector)
