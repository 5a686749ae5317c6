"""Every error fibod raises on purpose, each mapped to one status.

`http_status` is what the web apps answer; `exit_code` is what the CLI
exits with. Anything else escaping is a bug.
"""

from __future__ import annotations


class FibodError(Exception):
    """Base of fibod's deliberate errors."""

    http_status = 500
    exit_code = 1


class InputError(FibodError, ValueError):
    """The caller's input is invalid (bad sn, bad id, bad option)."""

    http_status = 400
    exit_code = 2


class NotFoundError(FibodError):
    """The task id is unknown."""

    http_status = 404
    exit_code = 1


class ConflictError(FibodError):
    """The request cannot apply to the task's state (cancelling a ready task)."""

    http_status = 409
    exit_code = 1


class UnavailableError(FibodError):
    """A backing service (Kafka, Redis) cannot serve now; retry later."""

    http_status = 503
    exit_code = 75  # EX_TEMPFAIL


class StoreAuthError(UnavailableError):
    """A store refused our credentials: a setting is wrong, retrying won't help."""

    exit_code = 77  # EX_NOPERM


class SegmentError(FibodError, ValueError):
    """A stored segment is truncated, corrupted or not a fibod segment."""

    http_status = 500
    exit_code = 65  # EX_DATAERR


class ExpiredError(FibodError):
    """The task existed once but its result has expired."""

    http_status = 410
    exit_code = 1


class UnauthorizedError(FibodError):
    """The request lacks a valid API key for a key-protected path."""

    http_status = 401
    exit_code = 77  # EX_NOPERM


class ForbiddenError(FibodError):
    """The path is switched off in this deployment."""

    http_status = 403
    exit_code = 77


class RangeNotSatisfiableError(FibodError):
    """A Range starts past the end of the body; `length` is the body's."""

    http_status = 416
    exit_code = 1

    def __init__(self, length: int, reason: str) -> None:
        super().__init__(f"range not satisfiable: {reason}; the body has {length} bytes")
        self.length = length


class CancelledError(FibodError):
    """The task was cancelled (DELETE /myapp/tasks/<id>): it has no result."""

    http_status = 410
    exit_code = 1


class TaskFailedError(FibodError):
    """The task failed; its reason is the message."""

    http_status = 500
    exit_code = 1


class DownloadCutError(UnavailableError):
    """A result stopped short of its length; `at` is how far it came."""

    def __init__(self, message: str, at: int) -> None:
        super().__init__(message)
        self.at = at
