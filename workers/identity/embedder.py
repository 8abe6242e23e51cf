"""SFace (OpenCV zoo, 2021dec) identity embeddings on ONNX Runtime: the fp32 graph folded from the shipped int8bq
file (`workers.model_files`), fed the face aligned as cv2.FaceRecognizerSF.alignCrop aligns it.

alignCrop maps the five points onto ArcFace's 112x112 template with a least-squares similarity transform
(rotation, uniform scale, shift) and warps bilinearly. `estimateAffinePartial2D` fits the same family: with a
RANSAC threshold no point can miss, its final refinement is the least-squares fit of all five (LMEDS instead
keeps a subset: crops off by up to 239 grey levels from alignCrop's, against 3 this way). The crop is fed as
RGB, 0-255 (the graph normalises), as FaceRecognizerSF.feature feeds it. Against alignCrop + feature on 124
faces of the shared photos: cosine >= 0.99999, norms within 0.005 (tests/identity/test_embedder.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

from workers.model_files import SFACE_2021DEC_FP32
from workers.runtimes import OnnxModel
from workers.vision import Face

# Where alignCrop puts the eyes, nose tip and mouth corners (Face.landmarks order) in the 112x112 crop.
ALIGNED_SIZE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
EVERY_POINT_FITS = 1e6  # px: every point is a RANSAC inlier, so the refined fit is the least-squares one

# The raw feature's norm is SFace's own quality signal. Measured on shared/testdata: every clear face
# of the identity sets and single-face clips scores 8.8-15.7; the dark, blurred audience faces of
# the hamilton clip 5.1-7.0 (and those match EACH OTHER at cosine 0.4-0.7); a detector false
# positive on foliage 4.7. Below this, a face's embedding says nothing about who it is.
IDENTIFIABLE_NORM = 8.0


@dataclass(frozen=True, eq=False)
class FaceEmbedding:
    vector: np.ndarray = field(repr=False)  # 128-d, L2-normalised
    norm: float  # of the raw feature, before normalising
    identifiable: bool  # norm high enough for the vector to be compared at all


class SFaceEmbedder:
    name = "sface"
    model_version = SFACE_2021DEC_FP32.source.name  # the same weights as the shipped file, folded

    def __init__(self, identifiable_norm: float = IDENTIFIABLE_NORM, threads: int | None = None) -> None:
        self.identifiable_norm = identifiable_norm
        self._model = OnnxModel(SFACE_2021DEC_FP32.path(), threads)

    def embed(self, image_bgr: np.ndarray, face: Face) -> FaceEmbedding:
        """The identity embedding of ``face`` (given in ``image_bgr``'s pixels)."""
        aligned_rgb = cv2.cvtColor(aligned_crop(image_bgr, face), cv2.COLOR_BGR2RGB)
        tensor = aligned_rgb.transpose(2, 0, 1)[None].astype(np.float32)
        feature = next(iter(self._model(tensor).values())).ravel()
        norm = float(np.linalg.norm(feature))
        return FaceEmbedding(feature / max(norm, 1e-12), norm, norm >= self.identifiable_norm)


def aligned_crop(image_bgr: np.ndarray, face: Face) -> np.ndarray:
    """The 112x112 crop SFace expects: ``face``'s five points moved onto TEMPLATE."""
    transform, _ = cv2.estimateAffinePartial2D(
        face.landmarks.astype(np.float32), TEMPLATE, method=cv2.RANSAC, ransacReprojThreshold=EVERY_POINT_FITS
    )
    return cv2.warpAffine(image_bgr, transform, (ALIGNED_SIZE, ALIGNED_SIZE))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


class FrameEmbeddings:
    """Each face of one frame embedded at most once, for whoever asks first (the tracker, or the stills' persons)
    and then for recognition; `next_frame` forgets them. The faces are held with their embeddings, so no id is
    reused while it remembers."""

    def __init__(self) -> None:
        self._embedded: dict[int, tuple[Face, FaceEmbedding]] = {}

    def embed(self, image_bgr: np.ndarray, face: Face) -> FaceEmbedding:
        if id(face) not in self._embedded:
            self._embedded[id(face)] = (face, get_embedder().embed(image_bgr, face))
        return self._embedded[id(face)][1]

    def next_frame(self) -> None:
        self._embedded.clear()


@cache
def get_embedder() -> SFaceEmbedder:
    """One loaded embedder per worker process."""
    return SFaceEmbedder()
