"""SFace (OpenCV zoo, 2021dec int8bq) identity embeddings through cv2.FaceRecognizerSF."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

from workers.vision import SFACE_2021DEC_INT8BQ, Face

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
    model_version = SFACE_2021DEC_INT8BQ.name

    def __init__(self, identifiable_norm: float = IDENTIFIABLE_NORM) -> None:
        self.identifiable_norm = identifiable_norm
        self._model = cv2.FaceRecognizerSF.create(str(SFACE_2021DEC_INT8BQ.path()), "")

    def embed(self, image_bgr: np.ndarray, face: Face) -> FaceEmbedding:
        """The identity embedding of ``face`` (given in ``image_bgr``'s pixels)."""
        aligned = self._model.alignCrop(image_bgr, yunet_row(face))
        feature = self._model.feature(aligned).ravel().astype(np.float32)
        norm = float(np.linalg.norm(feature))
        return FaceEmbedding(feature / max(norm, 1e-12), norm, norm >= self.identifiable_norm)


def yunet_row(face: Face) -> np.ndarray:
    """The detector row alignCrop expects: x, y, w, h, five (x, y) points, score (it aligns on the points)."""
    return np.array([*face.box, *face.landmarks.ravel(), face.score], dtype=np.float32)[None, :]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


@cache
def get_embedder() -> SFaceEmbedder:
    """One loaded embedder per worker process."""
    return SFaceEmbedder()
