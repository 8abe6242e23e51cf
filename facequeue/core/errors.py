"""Error codes a task can end with, and the message each one carries.

Where a seed API has a message for the case, the base message is the seed's, so the
compat routers can answer it verbatim; the detail after it says what exactly happened.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_URL = "invalid_url"
    URL_FORBIDDEN = "url_forbidden"
    DOWNLOAD_FAILED = "download_failed"
    MEDIA_TOO_LARGE = "media_too_large"
    UNSUPPORTED_MEDIA = "unsupported_media"
    CORRUPT_MEDIA = "corrupt_media"
    NO_FRAMES = "no_frames"
    MEDIA_LIMIT_EXCEEDED = "media_limit_exceeded"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    WORKER_LOST = "worker_lost"
    UPSTREAM_FAILED = "upstream_failed"
    COLLECTION_NOT_FOUND = "collection_not_found"
    INTERNAL_ERROR = "internal_error"


BASE_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_URL: "Invalid URL format",
    ErrorCode.URL_FORBIDDEN: "Failed to download media from URL",
    ErrorCode.DOWNLOAD_FAILED: "Failed to download media from URL",
    ErrorCode.MEDIA_TOO_LARGE: "Failed to download media from URL",
    ErrorCode.UNSUPPORTED_MEDIA: "Unsupported media type",
    ErrorCode.CORRUPT_MEDIA: "Media could not be decoded",
    ErrorCode.NO_FRAMES: "Video has no decodable frames",
    ErrorCode.MEDIA_LIMIT_EXCEEDED: "Media exceeds the configured limits",
    ErrorCode.INSUFFICIENT_CREDITS: "Insufficient Credits",  # as the API's 402 on submit
    ErrorCode.TIME_LIMIT_EXCEEDED: "Task exceeded its time limit",
    ErrorCode.WORKER_LOST: "Task was abandoned by its workers too many times",
    ErrorCode.UPSTREAM_FAILED: "Upstream face API failed",
    ErrorCode.COLLECTION_NOT_FOUND: "Collection not found",
    ErrorCode.INTERNAL_ERROR: "Internal error while processing the task",
}


class TaskError(Exception):
    """A final, client-caused or environmental failure of one task; never retried."""

    def __init__(self, code: ErrorCode, detail: str | None = None) -> None:
        self.code = code
        self.detail = detail
        super().__init__(self.message)

    @property
    def base_message(self) -> str:
        return BASE_MESSAGES[self.code]

    @property
    def message(self) -> str:
        return f"{self.base_message}: {self.detail}" if self.detail else self.base_message
