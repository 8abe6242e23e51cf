"""Serves locally stored crops under signed, expiring links (the S3 backend links to S3 instead)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import StorageDep
from api.errors import NotFound
from facequeue.core.storage import LocalStorage

router = APIRouter(tags=["media"])


@router.get("/v1/media/{key:path}", include_in_schema=False)
def get_media(key: str, expires: int, sig: str, storage: StorageDep) -> FileResponse:
    # One answer for bad signature, expiry and absence: a link reveals nothing about what exists.
    if not isinstance(storage, LocalStorage) or not storage.verify(key, expires, sig):
        raise NotFound("media not found")
    try:
        path = storage.fetch_to(key, storage.root)
    except (FileNotFoundError, ValueError) as error:
        raise NotFound("media not found") from error
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
