"""Examples of the face collection models (/v1/collections, and the detect options and results of collections)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from api.collection_schemas import (
    BatchMatchLine,
    BatchPersonAppearance,
    BatchPersonLine,
    CollectionCreate,
    CollectionFacePage,
    CollectionFaceView,
    CollectionPage,
    CollectionView,
    FaceSearchRequest,
    FaceSearchResult,
    FacesFromTask,
    ItemMatch,
)
from api.openapi.responses import EXAMPLE_TASK_ID
from facequeue.core.schemas import (
    FaceMatch,
    IndexedFace,
    IndexOptions,
    IndexReport,
    PersonMatches,
    SearchOptions,
    UnindexedFace,
)

EXAMPLE_FACE_ID = "5aQx1MqgT0ye3bD2nLwZ"
INDEXED_AT = datetime(2026, 5, 27, 12, 14, 4, 2000, tzinfo=UTC)
MATCH = FaceMatch(face_id="Hc2b0TqWw3xYzPm8RkVa", external_id="alice", similarity=0.8123)
INDEX_REPORT = IndexReport(
    collection_id="staff",
    external_id="alice",
    indexed=[IndexedFace(frame="0", index=0, face_id=EXAMPLE_FACE_ID)],
    unindexed=[UnindexedFace(frame="0", index=1, reason="exceeds_max_faces")],
)
COLLECTION = CollectionView(collection_id="staff", description="Office staff", face_count=42, created_at=INDEXED_AT)
COLLECTION_FACE = CollectionFaceView(
    face_id=EXAMPLE_FACE_ID,
    external_id="alice",
    detect_task_id=EXAMPLE_TASK_ID,
    frame="0",
    region=[120, 80, 96, 118],
    face_url=f"https://api.example.com/v1/media/collections/7/{EXAMPLE_FACE_ID}.jpg?expires=1780000000&sig=9b2e4d",
    created_at=INDEXED_AT,
)
BATCH_MATCH_LINES = [
    BatchMatchLine(
        position=1,
        name="clips/0002.mp4",
        detect_task_id=EXAMPLE_TASK_ID,
        matches=[ItemMatch(frame="4", frame_time=2.0, index=0, **MATCH.model_dump())],
    )
]
BATCH_PERSON_LINES = [
    BatchPersonLine(
        batch_person_id="bp_Qm3xT0aZk9Lw",
        items=[
            BatchPersonAppearance(
                position=0,
                name="clips/0001.mp4",
                detect_task_id=EXAMPLE_TASK_ID,
                person_id="person_0",
                time_ranges=[[0.0, 4.0], [9.5, 12.0]],
            ),
            BatchPersonAppearance(
                position=7,
                name="clips/0008.mp4",
                detect_task_id="Y2kR8vN1pQw5sT7uX0zA3bC6",
                person_id="person_1",
                time_ranges=[[2.0, 6.5]],
            ),
        ],
    )
]
COLLECTION_INSTANCES: list[BaseModel] = [
    IndexOptions(collection_id="staff", external_id="alice"),
    SearchOptions(collection_id="staff", threshold=0.5, max_matches=5),
    INDEX_REPORT,
    INDEX_REPORT.indexed[0],
    INDEX_REPORT.unindexed[0],
    MATCH,
    PersonMatches(matches=[MATCH], time_ranges=[[0.0, 2.4], [6.0, 7.2]]),
    CollectionCreate(collection_id="staff", description="Office staff"),
    COLLECTION,
    CollectionPage(items=[COLLECTION], next_cursor=None),
    COLLECTION_FACE,
    CollectionFacePage(items=[COLLECTION_FACE], next_cursor=None),
    FaceSearchRequest(face_id=EXAMPLE_FACE_ID, threshold=0.5, max_matches=5),
    FacesFromTask(detect_task_id=EXAMPLE_TASK_ID, faces=[("0", 1)], external_id="bob"),
    FaceSearchResult(face_id=EXAMPLE_FACE_ID, matches=[MATCH]),
    BATCH_MATCH_LINES[0],
    BATCH_MATCH_LINES[0].matches[0],
    BATCH_PERSON_LINES[0],
    BATCH_PERSON_LINES[0].items[0],
]
