"""The guard every upstream call passes, outermost first:

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
* Every failure ends as an `UpstreamError` (a `TaskError`); a response body's problems are raised by the
  adapter's parser as a `ResponseProblem`, which the guard turns into one naming the upstream. Both, and the
  kinds of `Failure`, are in `failures`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx
import pybreaker
import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from facequeue.core.settings import Settings
from workers.detectors.upstream.failures import RETRYABLE, Failure, ResponseProblem, UpstreamError, malformed
from workers.metrics import CIRCUIT_STATE_VALUES, UPSTREAM_CALLS, UPSTREAM_CIRCUIT_STATE
from workers.retry_after import parse_retry_after

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_RETRY_AFTER = 30.0  # seconds; longer asks fail the call rather than eat the task's time limit
BACKOFF_INITIAL = 0.5  # seconds before the first retry without Retry-After; doubles up to BACKOFF_MAX
BACKOFF_MAX = 8.0
# Jitter, so that the workers an outage hit at once do not retry in step.
_BACKOFF = wait_exponential(multiplier=BACKOFF_INITIAL, max=BACKOFF_MAX) + wait_random(0, BACKOFF_INITIAL)
# Statuses that reject this request's content; any other 4xx (401, 403, 404, ...) means a misconfigured
# upstream, which fails every call and so must count towards opening the circuit.
REQUEST_REJECTED_STATUSES = frozenset({400, 413, 415, 422})


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
            listeners=[_OnStateChange(protocol)],
            name=f"upstream:{protocol}",
        )
        UPSTREAM_CIRCUIT_STATE.labels(protocol).set(CIRCUIT_STATE_VALUES[self.breaker.current_state])

    def post(self, path: str, payload: dict[str, Any], parse: Callable[[Any], T]) -> T:
        try:
            parsed = self.breaker.call(self._with_retries, path, payload, parse)
        except pybreaker.CircuitBreakerError as error:
            UPSTREAM_CALLS.labels(self.protocol, Failure.CIRCUIT_OPEN).inc()
            raise self._error(
                Failure.CIRCUIT_OPEN,
                f"is unavailable: its circuit opened after {self.breaker.fail_max} consecutive failed calls "
                f"and lets one trial call through {self.breaker.reset_timeout:g} s after opening",
            ) from error
        except UpstreamError as error:
            UPSTREAM_CALLS.labels(self.protocol, error.failure).inc()
            raise
        UPSTREAM_CALLS.labels(self.protocol, "success").inc()
        return parsed

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


class _OnStateChange(pybreaker.CircuitBreakerListener):
    """Logs every change of the circuit's state and keeps its gauge current."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        UPSTREAM_CIRCUIT_STATE.labels(self.protocol).set(CIRCUIT_STATE_VALUES[new_state.name])
        log.warning("upstream_circuit", upstream=cb.name, old=old_state.name if old_state else None, new=new_state.name)


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise malformed(f"the body is not JSON ({_snippet(response.text) or 'empty'})") from None


def _error_summary(response: httpx.Response) -> str:
    """The error an upstream's non-2xx body describes, else the body's first characters."""
    try:
        body = response.json()
    except ValueError:
        text = _snippet(response.text)
        return f": {text}" if text else ""
    return body_error(body)


def body_error(body: Any) -> str:
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


class GuardedAdapter:
    """What both adapters share: one `UpstreamCaller` (HTTP client + circuit breaker), authenticated their way."""

    protocol: str

    def __init__(self, settings: Settings, sleep: Callable[[float], None] = time.sleep) -> None:
        key = settings.upstream_api_key
        auth = self.auth_headers(key.get_secret_value()) if key else {}
        self._caller = UpstreamCaller(self.protocol, settings, auth, sleep)

    @staticmethod
    def auth_headers(api_key: str) -> dict[str, str]:
        raise NotImplementedError

    @property
    def breaker(self) -> pybreaker.CircuitBreaker:
        return self._caller.breaker

    def close(self) -> None:
        self._caller.close()
