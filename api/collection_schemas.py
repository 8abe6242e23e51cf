"""Request and response models of /v1/collections: a tenant's face collections, their faces, and search by face."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from facequeue.core.schemas import (
    COLLECTION_ID_PATTERN,
    EXTERNAL_ID_PATTERN,
    MAX_INDEXED_FACES,
    MAX_SEARCH_MATCHES,
    FaceMatch,
    Region,
)


class CollectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    collection_id: str = Field(pattern=COLLECTION_ID_PATTERN, description="Your name for it: letters, digits, _ . -")
    description: str | None = Field(None, max_length=1024)


class CollectionView(BaseModel):
    collection_id: str
    description: str | None
    face_count: int
    created_at: datetime


class CollectionPage(BaseModel):
    items: list[CollectionView]
    next_cursor: str | None


class CollectionFaceView(BaseModel):
    face_id: str
    external_id: str | None
    detect_task_id: str | None = Field(description="the task that indexed it (the task may since have been purged)")
    frame: str = Field(description="its faces_obj key in that task")
    region: Region
    face_url: str | None = Field(description="an expiring link to the face's crop")
    created_at: datetime


class CollectionFacePage(BaseModel):
    items: list[CollectionFaceView]
    next_cursor: str | None


class FacesFromTask(BaseModel):
    """Faces of a finished task to index, with the embeddings kept from its run: no model runs."""

    model_config = ConfigDict(extra="forbid")

    detect_task_id: str = Field(max_length=32, description="A task run with the index or search option")
    faces: list[tuple[str, int]] = Field(
        min_length=1,
        max_length=MAX_INDEXED_FACES,
        description="[frame, index] pairs: the faces_obj key and the face's position in that frame's lists",
    )
    external_id: str | None = Field(None, pattern=EXTERNAL_ID_PATTERN, description="Who the faces are")


class FaceSearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    face_id: str = Field(max_length=32, description="A face of this collection: its neighbours are searched")
    threshold: float = Field(0.5, ge=0, le=1, description="Least similarity of a match")
    max_matches: int = Field(5, ge=1, le=MAX_SEARCH_MATCHES)


class FaceSearchResult(BaseModel):
    face_id: str
    matches: list[FaceMatch] = Field(description="the collection's other faces, best first")


class ItemMatch(FaceMatch):
    """A face of a batch item that matched a collection face."""

    frame: str = Field(description="the faces_obj key of the item's result")
    frame_time: float | None = Field(description="seconds from the start (video); null for images")
    index: int = Field(description="the face's position in that frame's lists")


class BatchMatchLine(BaseModel):
    """One line of GET /v1/batches/{batch_id}/matches (JSONL): an item with at least one match, in submit order."""

    position: int
    name: str | None = Field(description="The item's name, as given when it was submitted")
    detect_task_id: str
    matches: list[ItemMatch] = Field(description="by frame, then face, then similarity (best first)")


class BatchPersonAppearance(BaseModel):
    """One item's person that a batch-wide person is."""

    position: int
    name: str | None = Field(description="The item's name, as given when it was submitted")
    detect_task_id: str
    person_id: str = Field(description="the person's id in the item's result (`persons`)")
    time_ranges: list[list[float]] = Field(description="[first, last] seconds of each run of sampled frames it is in")


class BatchPersonLine(BaseModel):
    """One line of GET /v1/batches/{batch_id}/persons (JSONL): a batch-wide person, by its first item."""

    batch_person_id: str
    items: list[BatchPersonAppearance] = Field(description="in submit order")
