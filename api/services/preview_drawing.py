"""What an annotated preview looks like, drawn with OpenCV on a frame the worker kept (workers/preview_frames.py).

Per face: its box, its score and person id on a label above the box, the 6 landmarks, and the 90 points of
`face_shape_set` when the task asked for them. Coordinates in a result are the original frame's; `scale`
maps them onto the picture drawn on. A contact sheet puts every frame of a task in a grid of annotated cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facequeue.core.schemas import FaceFrame, FaceShape

BOX_BGR = (0, 200, 255)  # amber: stands out on skin, sky and foliage alike
LABEL_TEXT_BGR = (0, 0, 0)
# left eye, right eye, nose, mouth centre, left and right mouth corner
LANDMARK_BGR = ((255, 128, 0), (255, 128, 0), (0, 220, 0), (0, 0, 255), (255, 0, 255), (255, 0, 255))
SHAPE_BGR = (255, 255, 0)
JPEG_QUALITY = 85
FONT = cv2.FONT_HERSHEY_SIMPLEX

CONTACT_CELL_WIDTH = 320
CONTACT_COLUMNS = 5
CONTACT_GAP = 4
CONTACT_CAPTION = 20  # pixels of caption under each cell: frame key, time, faces
CONTACT_BACKGROUND = (32, 32, 32)
CAPTION_BGR = (230, 230, 230)


@dataclass(frozen=True)
class FrameAnnotations:
    """What is drawn on one frame, in the result's (original) coordinates."""

    frame: FaceFrame
    scores: Sequence[float]
    shapes: Sequence[FaceShape] | None
    person_ids: Sequence[str | None]


def annotate(image: np.ndarray, marks: FrameAnnotations, scale: float, scores: bool = True) -> np.ndarray:
    """Draw on `image` (in place) and return it; `scores=False` labels faces with their person ids alone."""
    # 2 px at 720p and below (1 px melts into the JPEG's halved colour resolution), 3 px at 1080p
    thickness = max(2, round(min(image.shape[:2]) / 360))
    font_scale = max(0.4, min(image.shape[:2]) / 1200)
    for index, (x, y, w, h) in enumerate(marks.frame.region):
        top_left = (round(x * scale), round(y * scale))
        bottom_right = (round((x + w) * scale), round((y + h) * scale))
        cv2.rectangle(image, top_left, bottom_right, BOX_BGR, thickness, cv2.LINE_AA)
        face_side = min(w, h) * scale  # dots in proportion to the face: small faces stay readable
        if marks.shapes is not None and index < len(marks.shapes):
            radius = min(thickness, max(1, round(face_side / 80)))
            for group in marks.shapes[index].model_dump().values():
                for point in group:
                    center = (round(point["x"] * scale), round(point["y"] * scale))
                    cv2.circle(image, center, radius, SHAPE_BGR, -1, cv2.LINE_AA)
        radius = min(thickness + 1, max(1, round(face_side / 30)))
        for point, colour in zip(marks.frame.landmarks[index], LANDMARK_BGR, strict=False):
            center = (round(point[0] * scale), round(point[1] * scale))
            cv2.circle(image, center, radius, colour, -1, cv2.LINE_AA)
        words = [f"{marks.scores[index]:.2f}"] if scores and index < len(marks.scores) else []
        if index < len(marks.person_ids) and marks.person_ids[index]:
            words.append(marks.person_ids[index])
        _label(image, " ".join(words), top_left, thickness, font_scale)
    return image


def _label(image: np.ndarray, text: str, box_top_left: tuple[int, int], thickness: int, font_scale: float) -> None:
    """The text on a box-coloured tab sitting on the box's top edge (inside the picture when the box is at its top)."""
    if not text:
        return
    (width, height), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
    left, top = box_top_left[0], box_top_left[1] - height - baseline - 2 * thickness
    if top < 0:
        top = box_top_left[1]
    cv2.rectangle(
        image, (left, top), (left + width + 2 * thickness, top + height + baseline + 2 * thickness), BOX_BGR, -1
    )
    cv2.putText(
        image, text, (left + thickness, top + height + thickness), FONT, font_scale, LABEL_TEXT_BGR, 1, cv2.LINE_AA
    )


def contact_sheet_size(frames: int, aspect: float) -> tuple[int, int]:
    """(width, height) of the sheet of `frames` cells whose pictures are `aspect` (height / width) tall."""
    columns = min(frames, CONTACT_COLUMNS)
    rows = math.ceil(frames / columns)
    cell_height = round(CONTACT_CELL_WIDTH * aspect)
    width = columns * CONTACT_CELL_WIDTH + (columns + 1) * CONTACT_GAP
    height = rows * (cell_height + CONTACT_CAPTION) + (rows + 1) * CONTACT_GAP
    return width, height


class ContactSheet:
    """A grid of annotated cells, 5 to a row, painted one frame at a time: only the sheet and the frame being
    painted are held (100 decoded 1280x720 frames at once would take 260 MiB)."""

    def __init__(self, frames: int, aspect: float) -> None:
        """`aspect`: height over width of the cells' pictures (the first frame's; other frames fit inside)."""
        self.columns = min(frames, CONTACT_COLUMNS)
        self.cell_height = round(CONTACT_CELL_WIDTH * aspect)
        width, height = contact_sheet_size(frames, aspect)
        self.image = np.full((height, width, 3), CONTACT_BACKGROUND, dtype=np.uint8)
        self.painted = 0

    def add(self, caption: str, image: np.ndarray, marks: FrameAnnotations, scale: float) -> None:
        """The next cell: `image` annotated (`scale` maps the result's coordinates onto it) and captioned."""
        fit = min(CONTACT_CELL_WIDTH / image.shape[1], self.cell_height / image.shape[0])
        size = (max(1, round(image.shape[1] * fit)), max(1, round(image.shape[0] * fit)))
        cell = annotate(cv2.resize(image, size, interpolation=cv2.INTER_AREA), marks, scale * fit, scores=False)
        row, column = divmod(self.painted, self.columns)
        left = CONTACT_GAP + column * (CONTACT_CELL_WIDTH + CONTACT_GAP)
        top = CONTACT_GAP + row * (self.cell_height + CONTACT_CAPTION + CONTACT_GAP)
        self.image[top : top + size[1], left : left + size[0]] = cell
        baseline = top + self.cell_height + CONTACT_CAPTION - 6
        cv2.putText(self.image, caption, (left + 2, baseline), FONT, 0.4, CAPTION_BGR, 1, cv2.LINE_AA)
        self.painted += 1


def encode_jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
