"""Result schemas written by the workers and served by the API.

`FaceFrame` is seed 000's per-frame object, field for field; everything facequeue adds
lives beside `faces_obj`, never inside it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Point = list[int]  # [x, y]
Region = list[int]  # [x, y, w, h]


class FaceFrame(BaseModel):
    landmarks: list[list[Point]] = Field(
        description="6 points per face: left eye, right eye, nose, mouth centre, left and right mouth corner"
    )
    landmarks_str: list[str] = Field(description="first 4 landmarks of each face as 'x1,y1:x2,y2:x3,y3:x4,y4'")
    region: list[Region] = Field(description="face boxes as [x, y, width, height]")
    removed: list = Field(
        default_factory=list, description="faces of the previous sampled frame no longer visible (video)"
    )
    frame_time: float | None = Field(description="seconds from the start (video); null for images")


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


class DetectResult(BaseModel):
    faces_obj: dict[str, FaceFrame]
    scores: dict[str, list[float]] = Field(
        description="detection confidence per face, keyed and ordered like faces_obj"
    )
    media: MediaInfo
    detector: DetectorInfo
