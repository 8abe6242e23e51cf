"""Library failures in words fit for a client: task errors must never carry server paths or internals."""

from __future__ import annotations


def failure_reason(exc: BaseException) -> str:
    """What went wrong, without the file name, errno number or log lines the library adds.

    FFmpeg's (PyAV's), the OS's and the resolver's errors put the reason in ``strerror``, and only ``str()``
    wraps it in the errno and the file they failed on, which is a path in the worker's data directory.
    """
    reason = getattr(exc, "strerror", None)
    return reason if isinstance(reason, str) and reason else str(exc)
