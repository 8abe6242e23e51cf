"""A tenant's face collections: create, read, list and delete them, list and delete their faces, search by face.

Another tenant's collection is as absent as a missing one, everywhere (404, the same message)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from api.collection_schemas import CollectionFaceView, CollectionView, FaceSearchResult
from api.errors import InvalidInput, NotFound, ServiceError
from api.rendering import LinkFn
from api.services import cursors
from db import collections, tasks
from db.collections import NewFace
from db.face_models import CollectionFace, FaceCollection
from db.models import url_safe_id
from facequeue.core.schemas import DetectOptions, IndexedFace, IndexReport
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, collection_face_key, collection_prefix
from facequeue.plumbing.metrics import COLLECTION_SEARCH


class CollectionExists(ServiceError):
    status_code = 409
    code = "collection_exists"


def collection_not_found(collection_id: str, field: str = "collection_id") -> NotFound:
    return NotFound(f"collection {collection_id} not found", field=field)


def check_collections(
    session: Session, tenant_id: str | None, options: DetectOptions, known: set[str] | None = None
) -> None:
    """A task's index and search options name collections of the caller's. `known`: ids already found (a
    batch's items mostly name the same one)."""
    for option in ("index", "search"):
        wanted = getattr(options, option)
        if wanted is None or (known is not None and wanted.collection_id in known):
            continue
        if collections.get_collection(session, tenant_id, wanted.collection_id) is None:
            raise collection_not_found(wanted.collection_id, field=f"{option}.collection_id")
        if known is not None:
            known.add(wanted.collection_id)


def collection_view(collection: FaceCollection) -> CollectionView:
    return CollectionView(
        collection_id=collection.collection_id,
        description=collection.description,
        face_count=collection.face_count,
        created_at=collection.created_at,
    )


class CollectionService:
    def __init__(self, session: Session, settings: Settings, storage: MediaStorage) -> None:
        self.session = session
        self.settings = settings
        self.storage = storage

    def create(self, tenant_id: str | None, collection_id: str, description: str | None) -> CollectionView:
        created = collections.create_collection(self.session, tenant_id, collection_id, description)
        if created is None:
            self.session.rollback()
            raise CollectionExists(f"collection {collection_id} already exists", field="collection_id")
        self.session.commit()
        return collection_view(created)

    def get(self, tenant_id: str | None, collection_id: str) -> FaceCollection:
        found = collections.get_collection(self.session, tenant_id, collection_id)
        if found is None:
            raise collection_not_found(collection_id)
        return found

    def list(self, tenant_id: str | None, cursor: str | None, limit: int) -> tuple[list[CollectionView], str | None]:
        after = cursors.unseal(cursor, "collections", tenant_id, self.settings) if cursor else None
        rows = collections.list_collections(self.session, tenant_id, after, limit)
        next_cursor = self._next([row.collection_id for row in rows], limit, "collections", tenant_id)
        return [collection_view(row) for row in rows], next_cursor

    def delete(self, tenant_id: str | None, collection_id: str) -> None:
        """The collection, its faces and vectors in one commit; then its crops."""
        collection_pk = collections.delete_collection(self.session, tenant_id, collection_id)
        if collection_pk is None:
            raise collection_not_found(collection_id)
        self.session.commit()
        self.storage.delete_prefix(collection_prefix(collection_pk))

    def faces(
        self, tenant_id: str | None, collection_id: str, external_id: str | None, cursor: str | None, limit: int
    ) -> tuple[Sequence[CollectionFace], str | None]:
        collection = self.get(tenant_id, collection_id)
        listing = f"faces of {collection.id}"
        after = cursors.unseal(cursor, listing, tenant_id, self.settings) if cursor else None
        rows = collections.list_faces(self.session, collection.id, external_id, after, limit)
        return rows, self._next([row.id for row in rows], limit, listing, tenant_id)

    def index_from_task(
        self,
        tenant_id: str | None,
        collection_id: str,
        task_id: str,
        faces: list[tuple[str, int]],
        external_id: str | None,
    ) -> IndexReport:
        """The task's faces into the collection, from the embeddings kept with the task; a face's crop is the
        task's own when it returned crops (return_face_url), else none."""
        collection = self.get(tenant_id, collection_id)
        task = tasks.get_task(self.session, task_id, tenant_id)
        if task is None or task.purged_at is not None:
            raise NotFound(f"detect task {task_id} not found", field="detect_task_id")
        wanted = list(dict.fromkeys((str(frame), index) for frame, index in faces))
        kept = collections.kept_embeddings(self.session, task.id, wanted)
        missing = [list(face) for face in wanted if face not in kept]
        if missing:
            raise InvalidInput(
                f"detect task {task_id} kept no embedding of the faces {missing}: a task keeps them only when it ran "
                "with the index or search option, until its result is deleted",
                field="faces",
            )
        crop_keys = (task.result or {}).get("crop_keys") or {}
        new_faces = []
        for frame, index in wanted:
            face_id, crops = url_safe_id(15), crop_keys.get(frame, [])
            crop_key = collection_face_key(collection.id, face_id) if index < len(crops) else None
            if crop_key is not None:
                self.storage.put_bytes(crop_key, self.storage.read_bytes(crops[index]), "image/jpeg")
            row = kept[(frame, index)]
            new_faces.append(NewFace(face_id, external_id, row.embedding, task.id, frame, index, row.region, crop_key))
        collections.add_faces(self.session, collection.id, new_faces)
        self.session.commit()
        return IndexReport(
            collection_id=collection_id,
            external_id=external_id,
            indexed=[IndexedFace(frame=face.frame, index=face.face_index, face_id=face.id) for face in new_faces],
            unindexed=[],
        )

    def delete_face(self, tenant_id: str | None, collection_id: str, face_id: str) -> None:
        collection = self.get(tenant_id, collection_id)
        crop_keys = collections.delete_faces(self.session, collection.id, [face_id])
        if not crop_keys:
            raise NotFound(f"face {face_id} not found in collection {collection_id}", field="face_id")
        self.session.commit()
        self.storage.delete_keys([key for key in crop_keys if key])

    def search(
        self, tenant_id: str | None, collection_id: str, face_id: str, threshold: float, max_matches: int
    ) -> FaceSearchResult:
        """The faces nearest one of the collection's own (no model runs), itself left out."""
        collection = self.get(tenant_id, collection_id)
        face = collections.get_face(self.session, collection.id, face_id)
        if face is None:
            raise NotFound(f"face {face_id} not found in collection {collection_id}", field="face_id")
        with COLLECTION_SEARCH.labels("face_id").time():
            found = collections.search(self.session, collection.id, face.embedding, threshold, max_matches, face.id)
        self.session.rollback()  # read only: ends the transaction its search settings were set in
        return FaceSearchResult(face_id=face_id, matches=found)

    def _next(self, positions: list[str], limit: int, listing: str, tenant_id: str | None) -> str | None:
        """The cursor after a full page: its last row's position (what the listing is ordered by)."""
        if len(positions) < limit:
            return None
        return cursors.seal(positions[-1], listing, tenant_id, self.settings)


def face_view(face: CollectionFace, link: LinkFn) -> CollectionFaceView:
    return CollectionFaceView(
        face_id=face.id,
        external_id=face.external_id,
        detect_task_id=face.detect_task_id,
        frame=face.frame,
        region=face.region,
        face_url=link(face.crop_key) if face.crop_key else None,
        created_at=face.created_at,
    )
