"""How an upstream call fails: the kinds of `Failure`, the `UpstreamError` (a `TaskError`) every failed call
ends as, and the `ResponseProblem` an adapter's parser raises about a response body, which the guard (`guard`)
turns into an `UpstreamError` naming the upstream. Shared by the guard, both adapters, the body checks (`checks`)
and `workers.detectors.routing`, which decides from a `Failure` whether a task falls back to local detection."""

from __future__ import annotations

from enum import StrEnum

from facequeue.core.errors import ErrorCode, TaskError

UPSTREAM_ERROR_CODE = ErrorCode.UPSTREAM_FAILED


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


def malformed(problem: str) -> ResponseProblem:
    return ResponseProblem(Failure.MALFORMED, f"returned a malformed response: {problem}")
