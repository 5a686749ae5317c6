"""HTTP clients of the stack.

`Client` follows the documented client flow (submit, long-poll, stream);
`raw_get` sends a request as written, from a chosen source address;
`StreamReader` reads a streamed answer a piece at a time, so a test can
strike mid-stream and see where the stream ended. The answers are
checked against tests/reference.py.
"""

from __future__ import annotations

import hashlib
import http.client
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

#: Longest a test waits for one task, seconds.
TASK_TIMEOUT_S = 60
#: Bytes per read when hashing a streamed body.
READ_CHUNK_BYTES = 1 << 20


class Client(requests.Session):
    """An HTTP session on the stack's base URL, with the client's flow."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def get_path(self, path: str, **kwargs: object) -> requests.Response:
        """GET a path of the base URL."""
        kwargs.setdefault("timeout", TASK_TIMEOUT_S)
        return self.get(self.base_url + path, **kwargs)  # type: ignore[arg-type]

    def submit(self, sn: int | str) -> str:
        """Submit a task; return its id."""
        resp = self.get_path("/myapp/fibo", params={"sn": sn})
        assert resp.status_code == 202, resp.text
        return resp.text

    def fetch(
        self, task_id: str, timeout_s: float = TASK_TIMEOUT_S, **params: str
    ) -> requests.Response:
        """Long-poll the query form until the task is ready or failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            resp = self.get_path("/myapp/fibotask", params={"id": task_id, "wait": "20", **params})
            if resp.content[:1] != b"\x01" or time.monotonic() > deadline:
                return resp

    def status(self, task_id: str) -> dict[str, object]:
        """Return the task as JSON (GET /myapp/tasks/<id>)."""
        resp = self.get_path(f"/myapp/tasks/{task_id}")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_ready(self, task_id: str, timeout_s: float) -> dict[str, object]:
        """Poll the task's JSON until it is ready; fail loudly after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                task = self.status(task_id)
            except (requests.RequestException, AssertionError):
                task = {"state": "unreachable"}  # a store may be restarting
            if task["state"] in ("ready", "failed"):
                return task
            assert time.monotonic() < deadline, f"task {task_id} not ready in {timeout_s} s: {task}"
            time.sleep(0.1)

    def stream_digest(self, task_id: str) -> StreamDigest:
        """Stream a ready task and hash its body without holding it."""
        with self.get_path("/myapp/fibotask", params={"id": task_id}, stream=True) as resp:
            hasher = hashlib.sha256()
            first, size = b"", 0
            for chunk in resp.iter_content(READ_CHUNK_BYTES):
                if not first:
                    first, chunk = chunk[:1], chunk[1:]
                hasher.update(chunk)
                size += len(chunk)
            return StreamDigest(
                resp.status_code,
                first,
                size,
                hasher.hexdigest(),
                resp.headers.get("Content-Length"),
            )


@dataclass(frozen=True)
class StreamDigest:
    """What a streamed answer held: status, first byte, body length and hash."""

    status: int
    first: bytes
    size: int
    sha256: str
    content_length: str | None


def raw_get(
    host: str, port: int, path: str, source: str | None = None, timeout_s: float = 30
) -> tuple[int, dict[str, str], bytes]:
    """GET with http.client, optionally from a chosen loopback address."""
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout_s, source_address=(source, 0) if source else None
    )
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class StreamReader:
    """A GET whose body is read a piece at a time and hashed, not kept.

    The status byte is kept apart (`first`); `received` counts every body
    byte, status byte included, to compare with `length` (Content-Length).
    """

    def __init__(self, base_url: str, path: str, timeout_s: float = 30) -> None:
        parts = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout_s
        )
        self._conn.request("GET", path)
        self._resp = self._conn.getresponse()
        self.status = self._resp.status
        self.length = int(self._resp.getheader("Content-Length") or -1)
        self.first = b""
        self.received = 0
        self._hasher = hashlib.sha256()

    def read(self, nbytes: int) -> int:
        """Read up to nbytes more (fewer at the end); return how many came."""
        got = 0
        while got < nbytes:
            try:
                chunk = self._resp.read(min(READ_CHUNK_BYTES, nbytes - got))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            if not self.first:
                self.first, chunk = chunk[:1], chunk[1:]
                self.received += 1
            self._hasher.update(chunk)
            self.received += len(chunk)
            got += len(chunk)
        return got

    def read_to_end(self) -> None:
        """Read until the server ends the answer or closes the connection."""
        while self.read(READ_CHUNK_BYTES):
            pass
        self._conn.close()

    @property
    def sha256(self) -> str:
        """The hash of the body read so far, without the status byte."""
        return self._hasher.hexdigest()
