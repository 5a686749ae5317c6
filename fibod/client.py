"""A small typed client of the fibod HTTP API, on the standard library alone.

    from fibod.client import FibodClient

    with FibodClient("http://127.0.0.1:8080") as fibod:
        task_id = fibod.submit(1000)            # or submit(1000, start=10**6)
        fibod.wait(task_id)                     # long-polls; raises if it failed
        with open("fib.txt", "wb") as out:
            fibod.download(task_id, out)        # streams, checks the length

`open_result` gives the stream itself (its ETag, where it starts, its
chunks) to resume a cut download with a Range checked by If-Range; the
`fibod get` command is built on it. `status`, `cancel` and `tasks` cover
the task routes. Errors are fibod's own (fibod/errors.py): 400 is
InputError, 404 NotFoundError, 409 ConflictError, 410 ExpiredError or
CancelledError, a failed task TaskFailedError, and an unavailable
service (429, 502, 503, 504, no connection) UnavailableError, after a
few retries where retrying is safe. One request at a time: a client is
one keep-alive connection, not to be shared between threads.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from fibod.errors import (
    CancelledError,
    ConflictError,
    DownloadCutError,
    ExpiredError,
    FibodError,
    InputError,
    NotFoundError,
    RangeNotSatisfiableError,
    TaskFailedError,
    UnavailableError,
)
from fibod.protocol import (
    CANCELLED,
    FAILED,
    FETCH_PATH,
    PROGRESS_HEADER,
    READY,
    STATUS_PREFIX,
    SUBMIT_PATH,
    TASKS_PATH,
)

#: Seconds each long-poll asks the service to wait (it clamps to its own limit).
POLL_WAIT_S = 20
#: Seconds a socket may stay silent (above POLL_WAIT_S: a long-poll is silent).
TIMEOUT_S = 60.0
#: Tries of a request the service could not take (429, 502, 503, 504, no connection).
TRIES = 4
#: Longest pause between tries, seconds, whatever Retry-After says.
MAX_PAUSE_S = 5.0
#: Bytes per read of a result.
CHUNK_BYTES = 1 << 20
_RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class TaskInfo:
    """A task as GET /myapp/tasks/<id> describes it."""

    id: str
    sn: int
    start: int
    state: str
    #: Fraction of the result's bytes stored, 0..1.
    progress: float
    eta_s: float | None
    #: Text length of the result (format=text), known from the start.
    text_bytes: int
    created: int
    started: int | None
    finished: int | None
    error: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> TaskInfo:
        """Read the task JSON of the API."""
        return cls(
            id=body["id"],
            sn=body["sn"],
            start=body.get("from", 0),
            state=body["state"],
            progress=body["progress"],
            eta_s=body.get("eta_s"),
            text_bytes=body["text_bytes"],
            created=body["created"],
            started=body.get("started"),
            finished=body.get("finished"),
            error=body.get("error"),
        )


@dataclass(frozen=True)
class TaskPage:
    """One page of GET /myapp/tasks, newest first."""

    tasks: list[TaskInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class Progress:
    """How far a pending task is: X-Fibod-Progress and the state word."""

    state: str
    fraction: float
    eta_s: float | None

    @classmethod
    def parse(cls, state: str, header: str | None) -> Progress:
        """Read "0.4213; eta=12" (the ETA is absent until there is one)."""
        fraction, eta = 0.0, None
        for i, part in enumerate((header or "").split(";")):
            name, _, value = part.strip().partition("=")
            try:
                if i == 0 and name:
                    fraction = float(name)
                elif name == "eta":
                    eta = float(value)
            except ValueError:
                pass  # a header this client does not understand is no reason to fail
        return cls(state, fraction, eta)


class ResultStream:
    """An open ready answer: its validators, where it starts, and its bytes.

    `offset`, `end` and `length` count the result's own bytes (the text,
    or the binary segments), without the status byte the wire body starts
    with: this answer carries bytes offset..end-1 of length.
    """

    def __init__(
        self,
        response: http.client.HTTPResponse,
        offset: int,
        length: int,
        end: int | None = None,
        on_abandon: Callable[[], None] | None = None,
    ) -> None:
        self._response = response
        self._on_abandon = on_abandon
        self.etag = response.getheader("ETag", "")
        self.offset = offset
        self.length = length
        self.end = length if end is None else end
        #: True if the answer is a range (206): it continues earlier bytes.
        self.partial = response.status == 206
        self.received = 0

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Yield the bytes as they come; raise DownloadCutError if they stop short."""
        expected = self.end - self.offset
        while self.received < expected:
            try:
                chunk = self._response.read(min(size, expected - self.received))
            except (OSError, http.client.HTTPException) as exc:
                raise self._cut(f"{type(exc).__name__}: {exc}") from None
            if not chunk:
                raise self._cut("the connection closed")
            self.received += len(chunk)
            yield chunk

    def close(self) -> None:
        """Stop reading; drop the connection if bytes are left on it.

        Unread bytes would be taken for the answer to the next request.
        """
        self._response.close()
        if self.offset + self.received < self.end and self._on_abandon is not None:
            self._on_abandon()

    def _cut(self, why: str) -> DownloadCutError:
        at = self.offset + self.received
        return DownloadCutError(f"download cut at byte {at} of {self.end}: {why}", at)


class FibodClient:
    """The fibod HTTP API at one base URL (its scheme, host, port and path)."""

    def __init__(self, base_url: str, timeout_s: float = TIMEOUT_S, tries: int = TRIES) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"the URL must be http:// or https:// and name a host: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._tries = max(tries, 1)
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> FibodClient:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- tasks -----------------------------------------------------------------

    def submit(self, sn: int, start: int = 0) -> str:
        """Ask for F(start)..F(start+sn-1); return the new task's id.

        Retried only where no task can have been made: a 429, or a 503
        (the service deletes a task it could not queue).
        """
        query = {"sn": sn} if not start else {"sn": sn, "from": start}
        resp, body = self._call("GET", SUBMIT_PATH, query, retry_on=frozenset({429, 503}))
        self._raise_for(resp, body, expected=(202,))
        return body.decode("ascii").strip()

    def status(self, task_id: str) -> TaskInfo:
        """Return the task (state, progress in bytes, ETA, sizes)."""
        resp, body = self._call("GET", STATUS_PREFIX + task_id)
        self._raise_for(resp, body, expected=(200,))
        return TaskInfo.from_json(json.loads(body))

    def cancel(self, task_id: str) -> TaskInfo:
        """Cancel a queued or running task; ConflictError if it already ended."""
        resp, body = self._call("DELETE", STATUS_PREFIX + task_id)
        self._raise_for(resp, body, expected=(200,))
        return TaskInfo.from_json(json.loads(body))

    def tasks(
        self, state: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> TaskPage:
        """Return one page of tasks, newest first."""
        query: dict[str, Any] = {"limit": limit}
        if state:
            query["state"] = state
        if cursor:
            query["cursor"] = cursor
        resp, body = self._call("GET", TASKS_PATH, query)
        self._raise_for(resp, body, expected=(200,))
        page = json.loads(body)
        return TaskPage([TaskInfo.from_json(t) for t in page["tasks"]], page["next_cursor"])

    def iter_tasks(self, state: str | None = None, limit: int = 100) -> Iterator[TaskInfo]:
        """Yield every listed task, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.tasks(state, limit, cursor)
            yield from page.tasks
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # --- results ---------------------------------------------------------------

    def wait(
        self,
        task_id: str,
        timeout_s: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """Long-poll until the task is ready; raise if it failed, expired or was cancelled.

        UnavailableError after timeout_s (None: no limit).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # The first byte alone (a range of one) says the state without the body.
        only_status = {"Range": f"bytes=0-{len(READY) - 1}"}
        while True:
            wait_s = POLL_WAIT_S
            if deadline is not None:
                wait_s = int(min(wait_s, max(deadline - time.monotonic(), 0)))
            query = {"id": task_id, "wait": wait_s}
            resp = self._open("GET", FETCH_PATH, query, only_status)
            body = resp.read()
            if resp.status != 202:
                self._raise_for(resp, body, expected=(200, 206))
                return
            if on_progress is not None:
                state = body[1:].decode("ascii", "replace")
                on_progress(Progress.parse(state, resp.getheader(PROGRESS_HEADER)))
            if deadline is not None and time.monotonic() >= deadline:
                raise UnavailableError(f"task {task_id} is not ready after {timeout_s:g} s")

    def open_result(
        self, task_id: str, fmt: str = "text", offset: int = 0, if_range: str | None = None
    ) -> ResultStream:
        """Open a ready task's result from `offset` (a Range request if above 0).

        With `if_range` (an ETag seen before), the service sends the
        range only if the result is still those bytes; otherwise it sends
        all of it, and the stream says so (`partial` False, `offset` 0).
        The task must be ready (see `wait`).
        """
        headers: dict[str, str] = {}
        if offset:
            headers["Range"] = f"bytes={offset + len(READY)}-"  # the status byte comes first
            if if_range:
                headers["If-Range"] = if_range
        query = {"id": task_id, "format": fmt}
        resp = self._open("GET", FETCH_PATH, query, headers)
        if resp.status not in (200, 206):
            body = resp.read()
            if resp.status == 202:
                raise ConflictError(f"task {task_id} is not ready yet")
            self._raise_for(resp, body, expected=(200, 206))
        length = int(resp.getheader("Content-Length") or 0)
        if resp.status == 206:
            first, last, total = _content_range(resp.getheader("Content-Range"))
            skip = len(READY)
            return ResultStream(resp, first - skip, total - skip, last + 1 - skip, self.close)
        status_byte = resp.read(len(READY))
        if status_byte != READY:
            resp.close()
            raise UnavailableError(f"task {task_id}: unexpected first byte {status_byte!r}")
        return ResultStream(resp, 0, length - len(READY), on_abandon=self.close)

    def download(
        self,
        task_id: str,
        out: BinaryIO,
        fmt: str = "text",
        on_bytes: Callable[[int], None] | None = None,
    ) -> int:
        """Write a ready task's whole result to `out`; return its length."""
        stream = self.open_result(task_id, fmt)
        try:
            for chunk in stream.chunks():
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
        finally:
            stream.close()
        return stream.length

    # --- HTTP ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        retry_on: frozenset[int] = _RETRY_STATUSES,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send a request and read its whole answer."""
        resp = self._open(method, path, query, {}, retry_on)
        return resp, resp.read()

    def _open(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None,
        headers: dict[str, str],
        retry_on: frozenset[int] = _RETRY_STATUSES,
    ) -> http.client.HTTPResponse:
        """Send a request, trying again while the service cannot take it."""
        target = self._prefix + path + ("?" + urlencode(query) if query else "")
        last = ""
        for attempt in range(self._tries):
            try:
                resp = self._send(method, target, headers)
            except UnavailableError as exc:
                last = str(exc)
                pause = 0.5 * 2**attempt
            else:
                if resp.status not in retry_on or attempt + 1 == self._tries:
                    return resp
                last = f"HTTP {resp.status}: {_reason(resp.read())}"
                pause = _retry_after(resp.getheader("Retry-After"), 0.5 * 2**attempt)
            if attempt + 1 < self._tries:
                time.sleep(min(pause, MAX_PAUSE_S))
        raise UnavailableError(f"{self.base_url}: {last} ({self._tries} tries)")

    def _send(self, method: str, target: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        """Send once; a keep-alive connection the server closed is opened again."""
        for fresh in (self._conn is None, True):
            conn = self._connection()
            try:
                conn.request(method, target, headers={"User-Agent": _user_agent(), **headers})
                return conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh:
                    raise UnavailableError(f"cannot reach {self.base_url}: {exc}") from None
        raise AssertionError("unreachable")

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = kind(self._host, self._port, timeout=self._timeout_s)
        return self._conn

    @staticmethod
    def _raise_for(resp: http.client.HTTPResponse, body: bytes, expected: tuple[int, ...]) -> None:
        """Turn an answer other than `expected` into fibod's error for it."""
        if resp.status in expected:
            return
        reason = _reason(body)
        status = resp.status
        if status == 400:
            raise InputError(reason)
        if status == 404:
            raise NotFoundError(reason)
        if status == 409:
            raise ConflictError(reason)
        if status == 410:
            raise CancelledError(reason) if body[:1] == CANCELLED else ExpiredError(reason)
        if status == 416:
            total = resp.getheader("Content-Range", "*/0").rpartition("/")[2]
            raise RangeNotSatisfiableError(int(total) if total.isdigit() else 0, reason)
        if status == 500 and body[:1] == FAILED:
            raise TaskFailedError(f"the task failed: {reason}")
        if status in _RETRY_STATUSES:
            raise UnavailableError(f"HTTP {status}: {reason}")
        raise FibodError(f"unexpected answer HTTP {status}: {reason}")


def _reason(body: bytes) -> str:
    """Return an error body's one line, without a leading status byte."""
    text = body[1:] if body[:1] in (FAILED, CANCELLED, b"\x03") else body
    return text.decode("utf-8", "replace").strip().splitlines()[0][:300] if text.strip() else ""


def _retry_after(header: str | None, default: float) -> float:
    try:
        return float(header) if header else default
    except ValueError:
        return default


def _content_range(header: str | None) -> tuple[int, int, int]:
    """Read "bytes first-last/total" of a 206 answer."""
    try:
        spec, _, total = (header or "").removeprefix("bytes ").partition("/")
        first, _, last = spec.partition("-")
        return int(first), int(last), int(total)
    except ValueError:
        raise UnavailableError(f"a 206 answer with a bad Content-Range: {header!r}") from None


def _user_agent() -> str:
    from fibod import __version__

    return f"fibod-client/{__version__}"
