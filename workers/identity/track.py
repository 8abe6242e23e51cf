"""One face track of `tracking.FaceTracker`: the sightings linked into it, the few faces embedded for it (its
*views*) and the one representative embedding they give, and the motion that predicts where its face is next.

The tracker decides what continues a track and when a face is worth embedding; a track only keeps the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workers.identity.embedder import FaceEmbedding
from workers.identity.persons import Sighting, face_quality
from workers.vision import Face


@dataclass(eq=False)
class Track:
    id: int
    sightings: list[Sighting]
    views: list[FaceEmbedding]  # the few faces embedded for this track
    tried_quality: float  # best face_quality embedded so far
    colours: np.ndarray  # colour_signature of the face in its last sighting
    embedded_at: int = 1  # len(sightings) when the last face was embedded
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per frame index

    @property
    def embedding(self) -> FaceEmbedding:
        """The track's one representative embedding: the mean of its identifiable views, else its best view."""
        identifiable = [view for view in self.views if view.identifiable]
        if not identifiable:
            return max(self.views, key=lambda view: view.norm)
        mean = np.mean([view.vector for view in identifiable], axis=0)
        return FaceEmbedding(mean / np.linalg.norm(mean), max(view.norm for view in identifiable), True)

    def boxes_to_match(self, frame_idx: int) -> tuple[np.ndarray, np.ndarray]:
        """Where the face last was and where its motion predicts it: a match to either counts."""
        last = self.sightings[-1]
        box = np.asarray(last.face.box)
        shift = self.velocity * (frame_idx - last.frame_idx)
        return box, box + np.array([shift[0], shift[1], 0.0, 0.0])

    def continue_with(self, sighting: Sighting, colours: np.ndarray, moved_from: Sighting | None) -> None:
        """Append a sighting; ``moved_from`` is the previous sample's sighting when the move is real motion."""
        self.colours = colours
        if moved_from is None:
            self.velocity = np.zeros(2)
        else:
            span = sighting.frame_idx - moved_from.frame_idx
            self.velocity = (_centre(sighting.face.box) - _centre(moved_from.face.box)) / max(span, 1)
        self.sightings.append(sighting)

    def add_view(self, embedding: FaceEmbedding, face: Face) -> None:
        self.views.append(embedding)
        self.tried_quality = max(self.tried_quality, face_quality(face))
        self.embedded_at = len(self.sightings)


def _centre(box: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2])
