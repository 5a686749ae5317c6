"""HTTP clients of the stack.

`Client` follows the documented client flow through `fibod.client` (submit,
status, wait, stream), the client users get, and keeps a requests session
for requests the tests write out themselves (`get_path`, `fetch`);
`raw_get` sends a request as written, from a chosen source address;
`StreamReader` reads a streamed answer a piece at a time, so a test can
strike mid-stream and see where the stream ended. The answers are
checked against tests/reference.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from fibod.client import FibodClient
from fibod.errors import FibodError
from fibod.textcache import PART_SUFFIX, TextCache

#: Longest a test waits for one task, seconds.
TASK_TIMEOUT_S = 60
#: Bytes per read when hashing a streamed body.
READ_CHUNK_BYTES = 1 << 20


class Client(requests.Session):
    """An HTTP session on the stack's base URL, with the client's flow."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url
        #: The user's client, for the documented flow.
        self.fibod = FibodClient(base_url)

    def close(self) -> None:
        """Close both clients."""
        self.fibod.close()
        super().close()

    def get_path(self, path: str, **kwargs: object) -> requests.Response:
        """GET a path of the base URL."""
        kwargs.setdefault("timeout", TASK_TIMEOUT_S)
        return self.get(self.base_url + path, **kwargs)  # type: ignore[arg-type]

    def submit(self, sn: int, start: int = 0) -> str:
        """Submit a task; return its id."""
        return self.fibod.submit(sn, start)

    def fetch(
        self, task_id: str, timeout_s: float = TASK_TIMEOUT_S, **params: str
    ) -> requests.Response:
        """Long-poll the query form until the task is ready or failed."""
        deadline = time.monotonic() + timeout_s
        while True:
            resp = self.get_path("/myapp/fibotask", params={"id": task_id, "wait": "20", **params})
            if resp.content[:1] != b"\x01" or time.monotonic() > deadline:
                return resp

    def status(self, task_id: str) -> dict[str, Any]:
        """Return the task (GET /myapp/tasks/<id>) as a dict of fibod.client's fields."""
        return dataclasses.asdict(self.fibod.status(task_id))

    def wait_ready(self, task_id: str, timeout_s: float) -> dict[str, Any]:
        """Poll the task until it is ready or failed; fail loudly after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                task = self.status(task_id)
            except FibodError:
                task = {"state": "unreachable"}  # a store may be restarting
            if task["state"] in ("ready", "failed"):
                return task
            assert time.monotonic() < deadline, f"task {task_id} not ready in {timeout_s} s: {task}"
            time.sleep(0.1)

    def stream_digest(self, task_id: str, fmt: str = "text") -> StreamDigest:
        """Stream a ready task and hash its body without holding it.

        fibod.client checks the first byte (0x00) and the length it reads.
        """
        stream = self.fibod.open_result(task_id, fmt)
        hasher = hashlib.sha256()
        try:
            for chunk in stream.chunks(READ_CHUNK_BYTES):
                hasher.update(chunk)
        finally:
            stream.close()
        return StreamDigest(
            200, b"\x00", stream.received, hasher.hexdigest(), str(1 + stream.length)
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
        self.headers = {k.lower(): v for k, v in self._resp.getheaders()}
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
            except (ConnectionResetError, http.client.IncompleteRead):
                chunk = b""  # the server closed the connection before the end
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


def fetch_sockets_sending(fetch_port: int) -> int:
    """Count fetch-app sockets with bytes queued for nginx (an app stream in flight)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{fetch_port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if int(line.split()[1]) > 0)


def no_fill_under_way(cache: TextCache) -> bool:
    """Tell whether no body is being written to the text cache (no part file)."""
    return not any(name.endswith(PART_SUFFIX) for name in os.listdir(cache.directory))
