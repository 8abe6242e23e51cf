"""Face collections (/v1/collections): a tenant's named sets of indexed faces, their faces, and search by face id.
Faces get into a collection through POST /v1/detect's `index` option."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.collection_schemas import (
    CollectionCreate,
    CollectionFacePage,
    CollectionPage,
    CollectionView,
    FaceSearchRequest,
    FaceSearchResult,
    FacesFromTask,
)
from api.deps import CollectionServiceDep, LinkDep, TenantDep
from api.openapi.responses import (
    BODY_ERRORS,
    CALLER_GATES,
    COLLECTION_EXISTS,
    COLLECTION_NOT_FOUND,
    FACE_NOT_FOUND,
    NATIVE_ERRORS,
)
from api.services.collections import collection_view, face_view
from facequeue.core.schemas import IndexReport

router = APIRouter(prefix="/v1", tags=["collections"], responses=NATIVE_ERRORS.responses(*CALLER_GATES))


@router.post(
    "/collections",
    status_code=status.HTTP_201_CREATED,
    response_model=CollectionView,
    operation_id="createCollection",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS, COLLECTION_EXISTS),
)
def create_collection(body: CollectionCreate, service: CollectionServiceDep, tenant_id: TenantDep) -> CollectionView:
    return service.create(tenant_id, body.collection_id, body.description)


@router.get(
    "/collections",
    response_model=CollectionPage,
    operation_id="listCollections",
    responses=NATIVE_ERRORS.responses(422),
)
def list_collections(
    service: CollectionServiceDep,
    tenant_id: TenantDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CollectionPage:
    items, next_cursor = service.list(tenant_id, cursor, limit)
    return CollectionPage(items=items, next_cursor=next_cursor)


@router.get(
    "/collections/{collection_id}",
    response_model=CollectionView,
    operation_id="getCollection",
    responses=NATIVE_ERRORS.responses(COLLECTION_NOT_FOUND),
)
def get_collection(collection_id: str, service: CollectionServiceDep, tenant_id: TenantDep) -> CollectionView:
    return collection_view(service.get(tenant_id, collection_id))


@router.delete(
    "/collections/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteCollection",
    responses=NATIVE_ERRORS.responses(COLLECTION_NOT_FOUND),
)
def delete_collection(collection_id: str, service: CollectionServiceDep, tenant_id: TenantDep) -> None:
    """Deletes its faces, their vectors and crops."""
    service.delete(tenant_id, collection_id)


@router.get(
    "/collections/{collection_id}/faces",
    response_model=CollectionFacePage,
    operation_id="listCollectionFaces",
    responses=NATIVE_ERRORS.responses(COLLECTION_NOT_FOUND, 422),
)
def list_faces(
    collection_id: str,
    service: CollectionServiceDep,
    tenant_id: TenantDep,
    link: LinkDep,
    external_id: Annotated[str | None, Query(max_length=255)] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CollectionFacePage:
    faces, next_cursor = service.faces(tenant_id, collection_id, external_id, cursor, limit)
    return CollectionFacePage(items=[face_view(face, link) for face in faces], next_cursor=next_cursor)


@router.post(
    "/collections/{collection_id}/faces",
    status_code=status.HTTP_201_CREATED,
    response_model=IndexReport,
    operation_id="indexFacesFromTask",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS, COLLECTION_NOT_FOUND),
)
def index_from_task(
    collection_id: str, body: FacesFromTask, service: CollectionServiceDep, tenant_id: TenantDep
) -> IndexReport:
    """Index faces of a finished task run with the index or search option (say, a search's unknown face), from the
    embeddings kept with it: no model runs. The quality gate does not apply: you chose the faces."""
    return service.index_from_task(tenant_id, collection_id, body.detect_task_id, body.faces, body.external_id)


@router.delete(
    "/collections/{collection_id}/faces/{face_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteCollectionFace",
    responses=NATIVE_ERRORS.responses(FACE_NOT_FOUND),
)
def delete_face(collection_id: str, face_id: str, service: CollectionServiceDep, tenant_id: TenantDep) -> None:
    """Deletes the face, its vector and crop."""
    service.delete_face(tenant_id, collection_id, face_id)


@router.post(
    "/collections/{collection_id}/search",
    response_model=FaceSearchResult,
    operation_id="searchCollectionByFace",
    responses=NATIVE_ERRORS.responses(*BODY_ERRORS, FACE_NOT_FOUND),
)
def search_by_face(
    collection_id: str, body: FaceSearchRequest, service: CollectionServiceDep, tenant_id: TenantDep
) -> FaceSearchResult:
    """The faces most like one of the collection's own, synchronously: an index query, no model run."""
    return service.search(tenant_id, collection_id, body.face_id, body.threshold, body.max_matches)
