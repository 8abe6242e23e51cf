"""Tencent AnalyzeFace's 90-point face shape, picked from MediaPipe's 468 mesh points plus the two Iris pupils.

Layout and order follow the seed example (AceData / Tencent, seed 002). "left" is the image's left on an
upright face (the subject's right): in the example left_eye has the smaller x. Every closed contour starts at
its image-left or outer end, runs along its lower edge first and comes back along its upper edge; each group
below says exactly how, and tests/landmarks pins those orders against the example's coordinates.

Mesh indices are named from the image's point of view; MediaPipe's own names ("right eye" = 33..133) are
the subject's. Pairs mirror each other: 33/263, 133/362, 61/291, 127/356, ...
"""

from __future__ import annotations

import numpy as np

from facequeue.core.schemas import SHAPE_GROUP_SIZES

MESH_GROUPS: dict[str, tuple[int, ...]] = {
    # Image-left temple at eye height (127), down the jaw to the chin (152, point 10), up to the image-right
    # temple (356). Every face-oval point from 127 to 152 except 149, so that 10 remain per side.
    "face_profile": (127, 234, 93, 132, 58, 172, 136, 150, 176, 148)  # image-left temple to jaw
    + (152,)  # chin
    + (377, 400, 379, 365, 397, 288, 361, 323, 454, 356),  # the mirror points, jaw to image-right temple
    # Outer corner (33), 3 lower-lid points towards the nose, inner corner (133), 3 upper-lid points back;
    # each upper point sits above a lower one (163/161, 145/159, 154/157).
    "left_eye": (33, 163, 145, 154, 133, 157, 159, 161),
    # The mirror image: outer corner (263, image right), lower lid leftwards, inner corner (362), upper lid back.
    "right_eye": (263, 390, 374, 381, 362, 384, 386, 388),
    # Lower edge from the outer tail (46) to the inner end (55), then the upper-edge points above the three
    # inner lower ones, inner to outer (66 over 65, 105 over 52, 63 over 53).
    "left_eye_brow": (46, 53, 52, 65, 55, 66, 105, 63),
    "right_eye_brow": (276, 283, 282, 295, 285, 296, 334, 293),
    # Outer contour: image-left corner (61), 5 lower-lip points rightwards (17 = lower centre), right corner
    # (291), 5 upper-lip points back (0 = upper centre). Inner contour: left corner (78), 4 lower points,
    # right corner (308), 4 upper points back.
    "mouth": (61, 91, 181, 17, 405, 321, 291, 269, 267, 0, 37, 39, 78, 88, 87, 317, 318, 308, 310, 312, 82, 80),
    # Tip (4; the example's tip sits ~3/4 of the way from the eyes to the nose bottom, where 4 is, not 1),
    # then a loop: bridge at eye height (6), down the image-left side (196, 236, 131) to the wing (64), the
    # nostril floor (99), the centre below the nose (2), and up the image-right side in mirror order.
    "nose": (4, 6, 196, 236, 131, 64, 99, 2, 328, 294, 360, 456, 419),
}

NOSE_TIP = 4
MOUTH_CORNERS = (61, 291)  # image-left, image-right


def face_shape(mesh_points: np.ndarray, pupils: np.ndarray) -> dict[str, list[dict[str, int]]]:
    """The 9 groups in the seed's key order; pupils = (image-left, image-right) from Iris."""
    groups = {name: mesh_points[list(indices)] for name, indices in MESH_GROUPS.items()}
    groups["left_pupil"], groups["right_pupil"] = pupils[:1], pupils[1:2]
    return {name: [_point(x, y) for x, y in groups[name]] for name in SHAPE_GROUP_SIZES}


def five_points(mesh_points: np.ndarray, pupils: np.ndarray) -> np.ndarray:
    """A face's 5 points (`Face.landmarks` order) refined: image-left pupil, image-right pupil, nose tip, mouth
    corners.

    Measured on the 43 dlib faces against iBUG eye centres, nose tip and mouth corners, as the seed's 6 points
    (`workers.vision.six_points`): NME 0.059 of the inter-ocular distance, where YuNet's own points give 0.148.
    """
    return np.vstack([pupils[:2], mesh_points[NOSE_TIP], mesh_points[list(MOUTH_CORNERS)]])


def _point(x: float, y: float) -> dict[str, int]:
    return {"x": int(round(x)), "y": int(round(y))}
