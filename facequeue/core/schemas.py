"""Detection options, and the result schemas written by the workers and rendered by the API.

`FaceFrame` is seed 000's per-frame object, field for field; everything facequeue adds lives
beside `faces_obj`, never inside it. Stored results name crops by storage key (`crop_keys`,
`Person.face_key`); the API turns keys into expiring links when it answers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Point = list[int]  # [x, y]
Region = list[int]  # [x, y, w, h]
Corners = list[int]  # [x1, y1, x2, y2]


MAX_SAMPLED_FRAMES = 100  # num_frames' ceiling in every seed API; sample_fps stops there too
# A task's timings in the order its stages run; Postgres (JSONB) keeps an object's keys in an order of its own
TIMING_STAGES = ("download", "decode", "detect", "total")
ITEM_NAME_MAX_LENGTH = 1024  # a batch item's name (a file path, a URL) as people read it, not a payload


def enum_names(*names: str) -> dict[str, Any]:
    """A Literal field's member names, one per value in order, for clients generated from the OpenAPI document
    (openapi-python-client and OpenAPI Generator read `x-enum-varnames`): values such as "90" or 0 are not
    identifiers, so generators would otherwise name them VALUE_0, VALUE_1."""
    return {"x-enum-varnames": list(names)}


# Each option is written once, in one of the bases below; the native request, the compat requests and
# DetectOptions inherit the ones they take (as the full-stack template's ItemBase -> ItemCreate / ItemPublic).


class SamplingOptions(BaseModel):
    num_frames: int = Field(5, ge=1, le=MAX_SAMPLED_FRAMES, description="Frames sampled evenly over a video")


class FaceOptions(BaseModel):
    single_face: bool = Field(False, description="Keep only the largest face per frame")
    return_face_url: bool = Field(False, description="Crop every face and return links, crop_region, crop_landmarks")


class CropOptions(BaseModel):
    expand_ratio: float = Field(0.3, ge=0, le=1, description="Crop expansion on each side, as a share of the box")


# the detector modes that may call the upstream face API (and are priced as it is); the rest run locally
UPSTREAM_DETECTOR_MODES = frozenset({"upstream", "auto"})


class DetectOptionsBase(CropOptions, FaceOptions, SamplingOptions):
    """Every detection option, with its default and its limits."""

    media_type: Literal["auto", "image", "video"] = Field("auto", description="auto: decided by sniffing the bytes")
    sample_fps: float | None = Field(
        None, gt=0, le=60, description=f"Instead of num_frames: frames per second, at most {MAX_SAMPLED_FRAMES} in all"
    )
    max_side: int | None = Field(None, ge=64, le=8192, description="Detector working long side (downscale only)")
    landmarks: Literal["6", "90"] = Field(
        "6",
        description='"90" adds the Tencent-style 90-point face_shape_set',
        json_schema_extra=enum_names("POINTS_6", "POINTS_90"),
    )
    persons: bool = Field(False, description="Group faces into persons across frames (tracking + embeddings)")
    need_rotate_detection: bool = Field(False, description="Try 90/180/270 degrees when no upright face is found")
    tiling: bool = Field(False, description="Add native-resolution 640 px tiles to find small faces (crowds)")
    detector: Literal["local", "accurate", "upstream", "auto"] | None = Field(
        None,
        description="local YuNet; accurate: local CenterFace (finds more small, turned and blurred faces, about 15-20x "
        "YuNet's CPU); the configured upstream face API; or auto: upstream while it is healthy, else YuNet. "
        "Default: the service's FACEQUEUE_DEFAULT_DETECTOR (local unless set)",
    )
    min_score: float | None = Field(
        None,
        ge=0.05,
        le=1,
        description="Keep faces the local detector scores at least this (CompreFace's det_prob_threshold): lower "
        "finds more faces and more false ones. Default: each detector's calibrated threshold "
        "(FACEQUEUE_DETECTOR_SCORE_THRESHOLD for YuNet, FACEQUEUE_DETECTOR_ACCURATE_SCORE_THRESHOLD for CenterFace)",
    )


# A collection's id and an indexed face's external id, as people name them (AWS Rekognition's character sets)
COLLECTION_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,255}$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,255}$"
MAX_INDEXED_FACES = 100  # per task, as IndexFaces' MaxFaces
MAX_SEARCH_MATCHES = 1000  # per face; pgvector's ef_search is raised to it (db/collections.py)


class IndexOptions(BaseModel):
    collection_id: str = Field(pattern=COLLECTION_ID_PATTERN, description="The tenant's collection to add faces to")
    external_id: str | None = Field(
        None, pattern=EXTERNAL_ID_PATTERN, description="Who the faces are (your id: a person, a user, a file)"
    )
    max_faces: int = Field(
        1, ge=1, le=MAX_INDEXED_FACES, description="Index at most this many faces, the largest first"
    )
    quality_filter: Literal["none", "low", "auto", "high"] = Field(
        "auto",
        description="Faces below this quality are listed in index.unindexed with a reason instead "
        "(docs/collections.md gives each level's limits); none indexes every face up to max_faces",
    )


class SearchOptions(BaseModel):
    collection_id: str = Field(pattern=COLLECTION_ID_PATTERN, description="The tenant's collection to search")
    threshold: float = Field(
        0.5, ge=0, le=1, description="Least similarity of a match (docs/collections.md: the false-match rate per value)"
    )
    max_matches: int = Field(5, ge=1, le=MAX_SEARCH_MATCHES, description="Matches per face, best first")


class RecognitionOptions(BaseModel):
    """Face collections (native API and batches): the faces found are indexed into a collection, or searched in one."""

    index: IndexOptions | None = Field(None, description="Add the faces found to a collection")
    search: SearchOptions | None = Field(None, description="Find each face found among a collection's faces")


class DetectOptions(RecognitionOptions, DetectOptionsBase):
    """What a worker does with a task's media. The API writes it into the task row; the worker reads it back.
    Unknown keys are ignored, so rows stored with options that no longer exist still load."""

    model_config = ConfigDict(frozen=True)

    frame_urls: tuple[str, ...] = ()
    timestamps: tuple[float, ...] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DetectOptions:
        """From the task row's stored JSON."""
        return cls.model_validate(params)


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


# Points per group of a 90-point face shape, in the seed's key order (seed 002).
SHAPE_GROUP_SIZES = {
    "face_profile": 21,
    "left_eye": 8,
    "right_eye": 8,
    "left_eye_brow": 8,
    "right_eye_brow": 8,
    "mouth": 22,
    "nose": 13,
    "left_pupil": 1,
    "right_pupil": 1,
}


def _shape_group(name: str) -> Any:
    return Field(min_length=SHAPE_GROUP_SIZES[name], max_length=SHAPE_GROUP_SIZES[name])


class FaceShape(BaseModel):
    """Tencent AnalyzeFace's 90 points, groups in the seed's order (JSONB storage reorders keys; this restores it)."""

    face_profile: list[ShapePoint] = _shape_group("face_profile")
    left_eye: list[ShapePoint] = _shape_group("left_eye")
    right_eye: list[ShapePoint] = _shape_group("right_eye")
    left_eye_brow: list[ShapePoint] = _shape_group("left_eye_brow")
    right_eye_brow: list[ShapePoint] = _shape_group("right_eye_brow")
    mouth: list[ShapePoint] = _shape_group("mouth")
    nose: list[ShapePoint] = _shape_group("nose")
    left_pupil: list[ShapePoint] = _shape_group("left_pupil")
    right_pupil: list[ShapePoint] = _shape_group("right_pupil")


class FaceMatch(BaseModel):
    face_id: str
    external_id: str | None
    similarity: float = Field(description="0..1, the embeddings' cosine (below 0 reads 0); docs/collections.md")


class IndexedFace(BaseModel):
    frame: str = Field(description="the faces_obj key")
    index: int = Field(description="the face's position in that frame's lists")
    face_id: str


class UnindexedFace(BaseModel):
    frame: str
    index: int
    reason: Literal["too_small", "low_score", "extreme_pose", "blurry", "exceeds_max_faces"]


class IndexReport(BaseModel):
    collection_id: str
    external_id: str | None
    indexed: list[IndexedFace]
    unindexed: list[UnindexedFace]


class PersonMatches(BaseModel):
    """A video person's matches in the searched collection, over all its appearances (GetFaceSearch's answer)."""

    matches: list[FaceMatch] = Field(description="each collection face's best similarity to any appearance, best first")
    time_ranges: list[list[float]] = Field(
        description="[first, last] seconds of each run of sampled frames in which the person appears"
    )


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
    preview_frames: dict[str, float] | None = Field(
        None, description="frames kept for annotated previews: key -> the kept JPEG's size over the frame's"
    )
    index: IndexReport | None = Field(None, description="with the index option: which faces were indexed, and why not")
    matches: dict[str, list[list[FaceMatch]]] | None = Field(
        None, description="with the search option: each face's matches, best first, keyed and ordered like faces_obj"
    )
    person_matches: dict[str, PersonMatches] | None = Field(
        None, description="with the search option and persons: each person's matches and time ranges, by person_id"
    )
