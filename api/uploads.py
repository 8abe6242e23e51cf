"""Media sent as itself instead of base64 in JSON: POST /v1/detect with the file's bytes as the body
(`Content-Type: image/*`, `video/*` or `application/octet-stream`), or as `multipart/form-data` with one part
named `file` (as CompreFace takes it); the options go in the query string, by the JSON body's names.

Base64 costs a third more bytes on the wire and a decode in the API; JSON stays for the compatible APIs and for
clients that prefer it. An upload has its own route on the same path (`UploadRoute`): a request whose
Content-Type is not an upload's goes on to the JSON route, which is unchanged.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.routing import Match
from starlette.types import Scope

from api.deps import SettingsDep
from api.errors import InvalidInput, PayloadTooLarge
from api.schemas import DetectUploadQuery

MULTIPART = "multipart/form-data"
OCTET_STREAM = "application/octet-stream"
RAW_CONTENT_TYPES = ("image/", "video/", OCTET_STREAM)
FILE_FIELD = "file"
MULTIPART_ENVELOPE_BYTES = 64 * 1024  # the boundaries and part headers around the file


def upload_kind(content_type: str | None) -> str | None:
    """ "raw" or "multipart" for a Content-Type that carries an upload, None for any other (JSON's route)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == MULTIPART:
        return "multipart"
    return "raw" if media_type.startswith(RAW_CONTENT_TYPES) else None


def upload_body_limit(kind: str, max_upload_bytes: int) -> int:
    return max_upload_bytes + (MULTIPART_ENVELOPE_BYTES if kind == "multipart" else 0)


class UploadRoute(APIRoute):
    """A route that takes uploads only: a request with another Content-Type is the next route's (JSON's)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # the Content-Type first: every JSON submit passes here, and skips the path match
        if upload_kind(Headers(scope=scope).get("content-type")) is None:
            return Match.NONE, {}
        return super().matches(scope)


async def uploaded_media(
    request: Request, settings: SettingsDep, query: Annotated[DetectUploadQuery, Query()]
) -> bytes:
    """The uploaded file's bytes. It takes the query so that FastAPI checks the options first: a request with
    a bad option is refused before its body is read."""
    if upload_kind(request.headers.get("content-type")) == "multipart":
        data = await _file_part(request)
    else:
        data = await request.body()
    if not data:
        raise InvalidInput("the uploaded file is empty", field=FILE_FIELD)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"file is larger than {settings.max_upload_bytes} bytes", field=FILE_FIELD)
    return data


async def _file_part(request: Request) -> bytes:
    parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=0)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise InvalidInput(
            f"multipart body: {error.message} (send one part, the file, named '{FILE_FIELD}'; options go in the "
            "query string)",
            field=FILE_FIELD,
        ) from None
    try:
        part = form.get(FILE_FIELD)
        if not isinstance(part, UploadFile):
            raise InvalidInput(f"multipart body has no file part named '{FILE_FIELD}'", field=FILE_FIELD)
        return await part.read()
    finally:
        await form.close()


UploadedMedia = Annotated[bytes, Depends(uploaded_media)]
