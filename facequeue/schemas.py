"""Result schemas written by the workers and rendered by the API.

`FaceFrame` is seed 000's per-frame object, field for field; everything facequeue adds lives
beside `faces_obj`, never inside it. Stored results name crops by storage key (`crop_keys`,
`Person.face_key`); the API turns keys into expiring links when it answers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from pydantic import BaseModel, Field

Point = list[int]  # [x, y]
Region = list[int]  # [x, y, w, h]
Corners = list[int]  # [x1, y1, x2, y2]


MAX_SAMPLED_FRAMES = 100  # num_frames' ceiling in every seed API; sample_fps stops there too


@dataclass(frozen=True)
class DetectOptions:
    """What a worker does with a task's media. The API writes it into the task row; the worker reads it back."""

    media_type: Literal["auto", "image", "video"] = "auto"
    num_frames: int = 5
    single_face: bool = False
    max_side: int | None = None
    return_face_url: bool = False
    expand_ratio: float = 0.3
    landmarks: Literal["6", "90"] = "6"
    persons: bool = False
    need_rotate_detection: bool = False
    frame_urls: tuple[str, ...] = ()
    timestamps: tuple[float, ...] = ()
    detector: Literal["local", "upstream", "auto"] = "local"
    sample_fps: float | None = None  # instead of num_frames: one frame every 1/sample_fps s
    tiling: bool = False  # whole frame plus native-resolution tiles, for small faces (local detection)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DetectOptions:
        """From the stored JSON (lists back to tuples; keys of older rows that no longer exist are ignored)."""
        known = {field.name: params[field.name] for field in fields(cls) if field.name in params}
        for name in ("frame_urls", "timestamps"):
            known[name] = tuple(known.get(name) or ())
        return cls(**known)


class FaceFrame(BaseModel):
    landmarks: list[list[Point]] = Field(
        description="6 points per face: left eye, right eye, nose, mouth centre, left and right mouth corner"
    )
    landmarks_str: list[str] = Field(description="first 4 landmarks of each face as 'x1,y1:x2,y2:x3,y3:x4,y4'")
    region: list[Region] = Field(description="face boxes as [x, y, width, height]")
    removed: list[Region] = Field(
        default_factory=list,
        description="video: regions (in the previous sampled frame) of faces that are no longer visible",
    )
    frame_time: float | None = Field(description="seconds from the start (video); null for images")
    face_urls: list[str] | None = Field(None, description="cropped face links when return_face_url is set")
    crop_region: list[Region] | None = Field(None, description="crop boxes in image coordinates")
    crop_landmarks: list[str] | None = Field(None, description="landmarks_str relative to each crop")


class MediaInfo(BaseModel):
    kind: Literal["image", "video"]
    mime: str
    width: int
    height: int
    duration: float | None = None
    fps: float | None = None
    frame_count: int | None = None


class DetectorInfo(BaseModel):
    name: str
    model_version: str
    max_side: int
    upstream_frames: int = Field(0, description="frames an upstream face API served (credits cost more)")


class Appearance(BaseModel):
    timestamp: float
    frame_idx: int
    bbox: Corners


class Person(BaseModel):
    person_id: str
    index: int = Field(description="left-to-right order by x of the first appearance")
    face_key: str | None = Field(None, description="storage key of the representative crop")
    bbox: Corners
    confidence: float
    appearances: list[Appearance]
    first_seen: float
    last_seen: float


class ShapePoint(BaseModel):
    x: int
    y: int


class FaceShape(BaseModel):
    """Tencent AnalyzeFace's 90 points, groups in the seed's order (JSONB storage reorders keys; this restores it)."""

    face_profile: list[ShapePoint] = Field(min_length=21, max_length=21)
    left_eye: list[ShapePoint] = Field(min_length=8, max_length=8)
    right_eye: list[ShapePoint] = Field(min_length=8, max_length=8)
    left_eye_brow: list[ShapePoint] = Field(min_length=8, max_length=8)
    right_eye_brow: list[ShapePoint] = Field(min_length=8, max_length=8)
    mouth: list[ShapePoint] = Field(min_length=22, max_length=22)
    nose: list[ShapePoint] = Field(min_length=13, max_length=13)
    left_pupil: list[ShapePoint] = Field(min_length=1, max_length=1)
    right_pupil: list[ShapePoint] = Field(min_length=1, max_length=1)


class DetectResult(BaseModel):
    faces_obj: dict[str, FaceFrame]
    scores: dict[str, list[float]] = Field(
        description="detection confidence per face, keyed and ordered like faces_obj"
    )
    media: MediaInfo
    detector: DetectorInfo
    frame_count: int = Field(description="frames analysed")
    crop_keys: dict[str, list[str]] | None = None
    face_shape_set: dict[str, list[FaceShape]] | None = Field(None, description="90-point shapes per frame")
    persons: list[Person] | None = None
