"""A detect submission, and the checks every one passes before it is stored (single or batch item)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field

from api.errors import ForbiddenUrl, InvalidInput, InvalidUrl, MissingInput, PayloadTooLarge
from api.schemas import DetectCreate, DetectUploadQuery
from facequeue.core.enums import Queue, SubmitApi
from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.schemas import DetectOptions
from facequeue.core.settings import Settings
from facequeue.core.ssrf import check_url_at_submit

DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
BASE64_WHITESPACE = b" \t\n\r\v\f"
MISSING_INPUT_MESSAGE = "Either 'url' or 'img' parameter must be provided"
INVALID_URL_MESSAGE = "Invalid URL format"


@dataclass(frozen=True)
class DetectSubmission:
    url: str | None = None
    img: str | None = None  # base64, as JSON bodies carry it
    image_bytes: bytes | None = None  # an upload's own bytes (api/uploads.py)
    params: DetectOptions = field(default_factory=DetectOptions)
    queue: Queue = Queue.DEFAULT
    tenant_id: str | None = None
    idempotency_key: str | None = None
    with_detect_id: bool = False
    callback_url: str | None = None
    api: SubmitApi = SubmitApi.NATIVE  # the API it came in through (metrics count by it)
    item_name: str | None = None  # a batch item's own name, echoed in the batch's results

    @classmethod
    def of_request(
        cls,
        body: DetectCreate,
        tenant_id: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> DetectSubmission:
        """A native request (POST /v1/detect, or a batch item)."""
        return cls(
            url=body.url,
            img=body.img,
            params=body.options(),
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
        )

    @classmethod
    def of_upload(
        cls, media: bytes, query: DetectUploadQuery, tenant_id: str | None = None, idempotency_key: str | None = None
    ) -> DetectSubmission:
        """An upload to POST /v1/detect: the file as the body, its options in the query string."""
        return cls(
            image_bytes=media,
            params=query.options(),
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            callback_url=query.callback_url,
        )


@dataclass(frozen=True)
class CheckedInput:
    """A submission's media, validated: a URL, uploaded bytes, or neither (frame_urls live in the options)."""

    url: str | None
    image_bytes: bytes | None
    params: DetectOptions


def checked_input(submission: DetectSubmission, settings: Settings) -> CheckedInput:
    params = submission.params
    if params.detector == "upstream" and (params.landmarks == "90" or params.tiling):
        raise InvalidInput(
            "90-point landmarks and tiling are computed locally: use detector local or auto", field="detector"
        )
    if params.detector == "accurate" and params.tiling:
        raise InvalidInput("tiling runs YuNet on its tiles: use detector local, or no tiling", field="detector")
    if params.frame_urls:
        return CheckedInput(None, None, validate_frames(params, settings))
    if submission.image_bytes is not None:  # api/uploads.py checked it: not empty, not over the limit
        return CheckedInput(None, submission.image_bytes, params)
    if submission.url:  # url wins over img
        return CheckedInput(validate_url(submission.url, settings), None, params)
    if submission.img:
        return CheckedInput(None, decode_image_data(submission.img, settings), params)
    raise MissingInput(MISSING_INPUT_MESSAGE, field="url")


WEBHOOK_URL_FORBIDDEN = "Webhooks may not be sent to this URL"


def validate_webhook_url(url: str, settings: Settings, field: str = "url") -> str:
    """A webhook URL (callback_url, the tenant endpoint), its host name resolved too: one that points at a
    private or loopback address is refused now, not at every delivery. The send-time check stays (DNS changes).
    The refusal names the same address and reason as a delivery's `url_forbidden` would."""
    return validate_url(url, settings, field, resolve_host=True, forbidden_message=WEBHOOK_URL_FORBIDDEN)


def validate_url(
    url: str, settings: Settings, field: str = "url", resolve_host: bool = False, forbidden_message: str | None = None
) -> str:
    """A URL the SSRF guard would accept as far as it can tell now (media URLs: without DNS); refused otherwise
    with the code the guard would fail it with later (invalid_url, url_forbidden), before anything is stored."""
    try:
        check_url_at_submit(url.strip(), settings, resolve_host)
    except TaskError as error:
        if error.code == ErrorCode.URL_FORBIDDEN:
            message = f"{forbidden_message}: {error.detail}" if forbidden_message else error.message
            raise ForbiddenUrl(message, field=field) from error
        raise InvalidUrl(INVALID_URL_MESSAGE, field=field) from error
    return url.strip()


def validate_frames(params: DetectOptions, settings: Settings) -> DetectOptions:
    """frame_urls input (analyze_frames): every URL valid; timestamps default to 0.0, 1.0, ..."""
    urls = tuple(validate_url(url, settings) for url in params.frame_urls)
    timestamps = params.timestamps or tuple(float(i) for i in range(len(urls)))
    if len(timestamps) != len(urls):
        raise InvalidInput(
            f"timestamps length ({len(timestamps)}) must match frame_urls length ({len(urls)})", field="timestamps"
        )
    return params.model_copy(update={"frame_urls": urls, "timestamps": timestamps, "media_type": "image"})


def decode_image_data(img: str, settings: Settings) -> bytes:
    payload = DATA_URI.sub("", img.strip(), count=1)
    if len(payload) * 3 // 4 > settings.max_upload_bytes:
        raise PayloadTooLarge(f"img is larger than {settings.max_upload_bytes} bytes", field="img")
    try:
        # bytes.translate drops line breaks and spaces far faster than a regex over a large upload
        data = base64.b64decode(payload.encode("ascii").translate(None, BASE64_WHITESPACE), validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput(f"img is not valid base64: {error}", field="img") from error
    if not data:
        raise InvalidInput("img is empty", field="img")
    return data


def request_hash(checked: CheckedInput, callback_url: str | None = None) -> str:
    """What an Idempotency-Key is bound to: the same key with a different hash is a conflict."""
    body = {
        "url": checked.url,
        "img_sha256": hashlib.sha256(checked.image_bytes).hexdigest() if checked.image_bytes is not None else None,
        "params": checked.params.model_dump(),
    }
    if callback_url is not None:  # only when sent, so the hashes of tasks stored without one still match
        body["callback_url"] = callback_url
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
