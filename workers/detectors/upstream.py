"""Face detection by an upstream face API: seed 000/001's Akool detect_faces and seed 002's AceData face/analyze.

Every upstream call passes the same guard, outermost first:

    circuit breaker (pybreaker) -> retries (tenacity) -> one HTTP request (httpx) -> response validation

* Retries: connect errors, timeouts, 5xx and 429, with exponential backoff and jitter, or exactly the wait a
  ``Retry-After`` header asks (seconds or an HTTP date); at most ``upstream_max_attempts`` attempts. A
  Retry-After longer than ``MAX_RETRY_AFTER`` ends the call at once: waiting less would only earn another 429.
  Other statuses, rejections and malformed responses are not retried; the same request gets the same answer.
* Circuit breaker: one per adapter, and `workers.detectors.routing` keeps one adapter per upstream per worker
  process, so it opens after ``upstream_breaker_failures`` consecutive failed calls (a call = all its attempts)
  of that process. After ``upstream_breaker_reset`` seconds one trial call goes through (half-open): success
  closes it, failure opens it again. A rejection (the upstream answered, but "no" to this request) proves the
  upstream alive, so it counts as a success. pybreaker holds its lock for the whole call, so calls through one
  breaker are serialised; workers run Celery's prefork pool (one task per process), so nothing waits on it.
* Every failure ends as an `UpstreamError` (a `TaskError`) whose detail says what happened, e.g. "upstream
  akool returned a malformed response: faces_obj.0.region[1] has 3 numbers, expected 4".

Neither protocol reports a confidence, so upstream faces carry ``UPSTREAM_SCORE`` (1.0: the upstream asserts
a face).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import cv2
import httpx
import numpy as np
import pybreaker
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings
from workers.detectors.base import Face, detect_faces
from workers.landmarks.shape90 import GROUP_SIZES
from workers.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Until facequeue/errors.py has ErrorCode.UPSTREAM_FAILED ("upstream_failed"); then this line points to it.
UPSTREAM_ERROR_CODE = ErrorCode.UPSTREAM_FAILED

UPSTREAM_SCORE = 1.0
MAX_RETRY_AFTER = 30.0  # seconds; longer asks fail the call rather than eat the task's time limit
BACKOFF_INITIAL = 0.5  # seconds before the first retry without Retry-After; doubles up to BACKOFF_MAX
BACKOFF_MAX = 8.0
# Jitter, so that the workers an outage hit at once do not retry in step.
_BACKOFF = wait_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX) + wait_random(0, BACKOFF_INITIAL)
JPEG_QUALITY = 90
# Statuses that reject this request's content; any other 4xx (401, 403, 404, ...) means a misconfigured
# upstream, which fails every call and so must count towards opening the circuit.
REQUEST_REJECTED_STATUSES = frozenset({400, 413, 415, 422})
# A face cut by the frame's edge sticks out of it, but never by more than half the image.
BOX_MARGIN = 0.5


class Failure(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    RATE_LIMITED = "rate_limited"
    HTTP_STATUS = "http_status"  # an unexpected status: redirect, 401, 403, 404, ...
    REJECTED = "rejected"  # the upstream answered "no" to this request
    MALFORMED = "malformed"
    CIRCUIT_OPEN = "circuit_open"
    CANNOT_SERVE = "cannot_serve"  # the protocol cannot take this frame (AceData without a URL)
    NOT_CONFIGURED = "not_configured"
    DISABLED = "disabled"


RETRYABLE = frozenset({Failure.UNREACHABLE, Failure.TIMEOUT, Failure.SERVER_ERROR, Failure.RATE_LIMITED})


class UpstreamError(TaskError):
    """One upstream call failed for good (after its retries); `failure` says how, the detail says exactly."""

    def __init__(self, protocol: str, failure: Failure, problem: str, retry_after: float | None = None) -> None:
        self.protocol = protocol
        self.failure = failure
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(UPSTREAM_ERROR_CODE, f"upstream {protocol} {problem}")

    @property
    def retryable(self) -> bool:
        return self.failure in RETRYABLE

    def gave_up(self, attempts: int) -> UpstreamError:
        plural = "s" if attempts != 1 else ""
        return UpstreamError(
            self.protocol, self.failure, f"{self.problem} (gave up after {attempts} attempt{plural})", self.retry_after
        )


class ResponseProblem(Exception):
    """What is wrong with a response body; the caller turns it into an `UpstreamError` naming the upstream."""

    def __init__(self, failure: Failure, problem: str) -> None:
        super().__init__(problem)
        self.failure = failure
        self.problem = problem


class UpstreamDetector(Protocol):
    """What routing needs of an adapter: one call per frame, in original-image pixels."""

    name: str
    model_version: str

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]: ...


# --- the guard: breaker -> retries -> one request ----------------------------------------------------------


class UpstreamCaller:
    """POSTs JSON to one upstream through its circuit breaker and retries; `parse` validates a 2xx body."""

    def __init__(
        self,
        protocol: str,
        settings: Settings,
        auth_headers: Mapping[str, str],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not settings.upstream_url:
            raise ValueError("upstream_url is not set")
        self.protocol = protocol
        self.connect_timeout = settings.upstream_connect_timeout
        self.read_timeout = settings.upstream_read_timeout
        self.max_attempts = max(1, settings.upstream_max_attempts)
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=settings.upstream_url,
            headers=dict(auth_headers),
            timeout=httpx.Timeout(self.read_timeout, connect=self.connect_timeout),
        )
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=settings.upstream_breaker_failures,
            reset_timeout=settings.upstream_breaker_reset,
            exclude=[_proves_upstream_alive],
            throw_new_error_on_trip=False,  # the call that trips the breaker keeps its own, precise error
            listeners=[_LogStateChanges()],
            name=f"upstream:{protocol}",
        )

    def post(self, path: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        try:
            return self.breaker.call(self._with_retries, path, payload, parse)
        except pybreaker.CircuitBreakerError as error:
            raise self._error(
                Failure.CIRCUIT_OPEN,
                f"is unavailable: its circuit opened after {self.breaker.fail_max} consecutive failed calls "
                f"and lets one trial call through {self.breaker.reset_timeout:g} s after opening",
            ) from error

    def close(self) -> None:
        self._client.close()

    def _with_retries(self, path: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | _StopIfRetryAfterTooLong(),
            wait=_WaitRetryAfter(_BACKOFF),
            retry=retry_if_exception(lambda error: isinstance(error, UpstreamError) and error.retryable),
            sleep=self._sleep,
            retry_error_callback=_give_up,
        )
        return retrying(self._attempt, path, payload, parse)

    def _attempt(self, path: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        response = self._send(path, payload)
        self._check_status(response)
        try:
            return parse(_json_body(response))
        except ResponseProblem as problem:
            raise self._error(problem.failure, problem.problem) from None

    def _send(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.post(path, json=payload)
        except httpx.ConnectTimeout:
            raise self._error(
                Failure.TIMEOUT, f"did not accept a connection within {self.connect_timeout:g} s"
            ) from None
        except httpx.TimeoutException:
            raise self._error(Failure.TIMEOUT, f"did not answer within {self.read_timeout:g} s") from None
        except httpx.TransportError as error:
            raise self._error(Failure.UNREACHABLE, f"could not be reached ({type(error).__name__}: {error})") from None

    def _check_status(self, response: httpx.Response) -> None:
        failure = _status_failure(response.status_code)
        if failure is None:
            return
        retry_after = parse_retry_after(response.headers.get("retry-after")) if failure in RETRYABLE else None
        asked = f" (Retry-After: {retry_after:g} s)" if retry_after is not None else ""
        raise self._error(
            failure, f"answered HTTP {response.status_code}{_error_summary(response)}{asked}", retry_after
        )

    def _error(self, failure: Failure, problem: str, retry_after: float | None = None) -> UpstreamError:
        return UpstreamError(self.protocol, failure, problem, retry_after)


def _status_failure(status: int) -> Failure | None:
    if 200 <= status < 300:
        return None
    if status == 429:
        return Failure.RATE_LIMITED
    if status >= 500:
        return Failure.SERVER_ERROR
    if status in REQUEST_REJECTED_STATUSES:
        return Failure.REJECTED
    return Failure.HTTP_STATUS


def _proves_upstream_alive(error: BaseException) -> bool:
    return isinstance(error, UpstreamError) and error.failure is Failure.REJECTED


def _asked_wait(state: RetryCallState) -> float | None:
    error = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
    return error.retry_after if isinstance(error, UpstreamError) else None


class _WaitRetryAfter(wait_base):
    """The wait Retry-After asks for, else the fallback's backoff."""

    def __init__(self, fallback: wait_base) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        asked = _asked_wait(retry_state)
        return asked if asked is not None else self.fallback(retry_state)


class _StopIfRetryAfterTooLong(stop_base):
    """Stop when Retry-After asks for more than MAX_RETRY_AFTER."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        return (_asked_wait(retry_state) or 0.0) > MAX_RETRY_AFTER


def _give_up(state: RetryCallState) -> Any:
    """Retries are exhausted: re-raise the last error (a retryable `UpstreamError`), saying how many attempts."""
    raise state.outcome.exception().gave_up(state.attempt_number) from None


class _LogStateChanges(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        log.warning("upstream_circuit", upstream=cb.name, old=old_state.name if old_state else None, new=new_state.name)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _malformed(f"the body is not JSON ({_snippet(response.text) or 'empty'})") from None


def _error_summary(response: httpx.Response) -> str:
    """The error an upstream's non-2xx body describes, else the body's first characters."""
    try:
        body = response.json()
    except ValueError:
        text = _snippet(response.text)
        return f": {text}" if text else ""
    return _body_error(body)


def _body_error(body: Any) -> str:
    """ ": code: message (trace_id ...)" from AceData's {error: {code, message}, trace_id} or Akool's error_msg."""
    if not isinstance(body, dict):
        return ""
    error = body["error"] if isinstance(body.get("error"), dict) else body
    parts = [str(error[key]) for key in ("code", "message", "error_msg") if error.get(key) is not None]
    trace = f" (trace_id {body['trace_id']})" if body.get("trace_id") else ""
    return f": {': '.join(parts)}{trace}" if parts or trace else ""


def _snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else "")) if text else ""


# --- response validation ---------------------------------------------------------------------------------


def _malformed(problem: str) -> ResponseProblem:
    return ResponseProblem(Failure.MALFORMED, f"returned a malformed response: {problem}")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _field(value: Any, key: str, path: str) -> Any:
    where = f"{path}.{key}" if path else key
    if not isinstance(value, dict):
        raise _malformed(f"{path or 'the body'} is {_kind(value)}, not an object")
    if key not in value:
        raise _malformed(f"{where} is missing")
    return value[key]


def _list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise _malformed(f"{path} is {_kind(value)}, not a list")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        shown = repr(value) if isinstance(value, float) else _kind(value)  # NaN and Infinity parse as floats
        raise _malformed(f"{path} is {shown}, not a finite number")
    return float(value)


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _malformed(f"{path} is {_kind(value)}, not an integer")
    return value


def _numbers(value: Any, count: int, path: str) -> list[float]:
    items = _list(value, path)
    if len(items) != count:
        raise _malformed(f"{path} has {len(items)} numbers, expected {count}")
    return [_number(item, f"{path}[{index}]") for index, item in enumerate(items)]


def _checked_box(box: tuple[float, float, float, float], path: str, width: int, height: int) -> tuple[float, ...]:
    """A positive-size box that overlaps the image and sticks out of it by at most BOX_MARGIN of its sides."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise _malformed(f"{path} has a non-positive size {w:g}x{h:g}")
    overlaps = x < width and y < height and x + w > 0 and y + h > 0
    near = (
        x >= -BOX_MARGIN * width
        and y >= -BOX_MARGIN * height
        and x + w <= (1 + BOX_MARGIN) * width
        and y + h <= (1 + BOX_MARGIN) * height
    )
    if not (overlaps and near):
        raise _malformed(f"{path} [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image")
    return box


# --- Akool (seeds 000/001) -------------------------------------------------------------------------------

# Akool's 6 points: left eye, right eye, nose, mouth centre, left and right mouth corner. Ours are the same
# without the mouth centre (which is derived from the corners anyway).
AKOOL_TO_FIVE = [0, 1, 2, 4, 5]


def parse_akool(body: Any, width: int, height: int) -> list[Face]:
    """faces_obj["0"] of a detect_faces response for one image of width x height."""
    code = _integer(_field(body, "error_code", ""), "error_code")
    if code != 0:
        raise ResponseProblem(
            Failure.REJECTED, f"answered error_code {code}: {body.get('error_msg') or 'no error_msg'}"
        )
    frame = _field(_field(body, "faces_obj", ""), "0", "faces_obj")
    regions = _list(_field(frame, "region", "faces_obj.0"), "faces_obj.0.region")
    landmarks = _list(_field(frame, "landmarks", "faces_obj.0"), "faces_obj.0.landmarks")
    if len(regions) != len(landmarks):
        raise _malformed(f"faces_obj.0 has {len(regions)} regions but {len(landmarks)} landmark sets")
    return [
        Face(
            box=_akool_box(region, f"faces_obj.0.region[{index}]", width, height),
            landmarks=_akool_points(points, f"faces_obj.0.landmarks[{index}]")[AKOOL_TO_FIVE],
            score=UPSTREAM_SCORE,
        )
        for index, (region, points) in enumerate(zip(regions, landmarks, strict=True))
    ]


def _akool_box(region: Any, path: str, width: int, height: int) -> tuple[float, float, float, float]:
    x, y, w, h = _numbers(region, 4, path)
    return _checked_box((x, y, w, h), path, width, height)


def _akool_points(value: Any, path: str) -> np.ndarray:
    points = _list(value, path)
    if len(points) != 6:
        raise _malformed(f"{path} has {len(points)} points, expected 6")
    return np.array([_numbers(point, 2, f"{path}[{index}]") for index, point in enumerate(points)])


def _jpeg_base64(image_bgr: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode the frame as JPEG")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


class AkoolUpstream:
    """POST {upstream_url}/interface/detect-api/detect_faces with the frame as base64 JPEG ``img``; auth x-api-key.

    Also a `FaceDetector` (its `infer` is one guarded call), so `detect_faces` downscales the frame to
    max_side before upload and maps the faces back, as for YuNet.
    """

    protocol = "akool"
    name = "upstream:akool"
    model_version = "akool detect_faces"
    path = "/interface/detect-api/detect_faces"

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        key = settings.upstream_api_key
        auth = {"x-api-key": key.get_secret_value()} if key else {}
        self._caller = UpstreamCaller(self.protocol, settings, auth, sleep)

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        return self._caller.breaker

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]:
        # The source URL is not sent: the upstream sees the very pixels we decoded (uploads and video frames
        # have no URL anyway, and a URL our fetcher may reach need not be reachable from the upstream).
        return detect_faces(self, image_bgr, max_side)

    def load(self) -> None:
        """Nothing to load: the model runs upstream."""

    def set_input_size(self, width: int, height: int) -> None:
        """Nothing to set: each request carries its image."""

    def infer(self, image_bgr: np.ndarray) -> list[Face]:
        height, width = image_bgr.shape[:2]
        # single_face stays false: the pipeline picks the largest face itself, as it does for YuNet
        payload = {"img": _jpeg_base64(image_bgr)}
        return self._caller.post(self.path, payload, lambda body: parse_akool(body, width, height))

    def close(self) -> None:
        self._caller.close()


# --- AceData (seed 002) ----------------------------------------------------------------------------------

# Group indices, read off the seed example (tests/landmarks/seed_example.py): nose[0] (311, 242) lies inside
# the loop nose[1..12] draws around the nose, so it is the tip; mouth[0] (296, 262) and mouth[6] (335, 277)
# are the outer contour's image-left- and image-right-most points, the corners. "left" is the image's left:
# left_pupil (310, 211) has the smaller x, as our "image-left eye" does.
ACEDATA_NOSE_TIP = 0
ACEDATA_MOUTH_CORNERS = (0, 6)
ACEDATA_OUTLINE_GROUPS = ("face_profile", "left_eye_brow", "right_eye_brow")


def parse_acedata(body: Any, width: int, height: int) -> list[Face]:
    """face_shape_set of a face/analyze response for the task's image of width x height."""
    if isinstance(body, dict) and body.get("success") is False:
        raise ResponseProblem(Failure.REJECTED, f"answered success=false{_body_error(body)}")
    size = (
        _integer(_field(body, "image_width", ""), "image_width"),
        _integer(_field(body, "image_height", ""), "image_height"),
    )
    if size != (width, height):
        # It analysed other pixels than we decoded (changed URL content, EXIF rotation): not an outage.
        raise ResponseProblem(
            Failure.REJECTED, f"analysed a {size[0]}x{size[1]} image, but the task's image is {width}x{height}"
        )
    shapes = _list(_field(body, "face_shape_set", ""), "face_shape_set")
    return [_acedata_face(shape, f"face_shape_set[{index}]", width, height) for index, shape in enumerate(shapes)]


def _acedata_face(shape: Any, path: str, width: int, height: int) -> Face:
    groups = {
        name: _acedata_points(_field(shape, name, path), size, f"{path}.{name}") for name, size in GROUP_SIZES.items()
    }
    # The box spans temples, chin (face_profile) and brows: the face without forehead, tighter than YuNet's.
    outline = np.vstack([groups[name] for name in ACEDATA_OUTLINE_GROUPS])
    (x1, y1), (x2, y2) = outline.min(axis=0), outline.max(axis=0)
    _checked_box((x1, y1, x2 - x1, y2 - y1), f"{path} (bounds of face_profile and eyebrows)", width, height)
    (x1, y1), (x2, y2) = np.clip([(x1, y1), (x2, y2)], 0, (width, height))
    landmarks = np.vstack(
        [
            groups["left_pupil"][0],
            groups["right_pupil"][0],
            groups["nose"][ACEDATA_NOSE_TIP],
            groups["mouth"][ACEDATA_MOUTH_CORNERS[0]],
            groups["mouth"][ACEDATA_MOUTH_CORNERS[1]],
        ]
    )
    return Face((float(x1), float(y1), float(x2 - x1), float(y2 - y1)), landmarks, UPSTREAM_SCORE)


def _acedata_points(value: Any, count: int, path: str) -> np.ndarray:
    points = _list(value, path)
    if len(points) != count:
        raise _malformed(f"{path} has {len(points)} points, expected {count}")
    return np.array(
        [
            [_number(_field(point, axis, f"{path}[{index}]"), f"{path}[{index}].{axis}") for axis in ("x", "y")]
            for index, point in enumerate(points)
        ]
    )


class AceDataUpstream:
    """POST {upstream_url}/face/analyze with ``image_url``; auth Bearer.

    The upstream fetches and analyses the original image itself, so it serves only frames that have a URL
    (image tasks by URL or frame_urls), and max_side does not apply.
    """

    protocol = "acedata"
    name = "upstream:acedata"
    model_version = "acedata face/analyze"
    path = "/face/analyze"

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        key = settings.upstream_api_key
        auth = {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}
        self._caller = UpstreamCaller(self.protocol, settings, auth, sleep)

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        return self._caller.breaker

    def detect(self, image_bgr: np.ndarray, max_side: int, source_url: str | None = None) -> list[Face]:
        if not source_url:
            raise UpstreamError(
                self.protocol,
                Failure.CANNOT_SERVE,
                "cannot serve this frame: face/analyze takes only image_url, and the frame has none "
                "(an uploaded image or a video frame)",
            )
        height, width = image_bgr.shape[:2]
        payload = {"image_url": source_url}
        return self._caller.post(self.path, payload, lambda body: parse_acedata(body, width, height))

    def close(self) -> None:
        self._caller.close()


ADAPTERS: dict[str, Callable[..., AkoolUpstream | AceDataUpstream]] = {
    "akool": AkoolUpstream,
    "acedata": AceDataUpstream,
}


def upstream_adapter(
    settings: Settings, sleep: Callable[[float], None] = time.sleep
) -> AkoolUpstream | AceDataUpstream:
    """A new adapter (HTTP client + circuit breaker) for the configured upstream protocol."""
    return ADAPTERS[settings.upstream_protocol](settings, sleep)
