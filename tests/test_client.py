"""fibod.client against a scripted HTTP server: retries, errors, cuts, ranges.

The flows against the real stack are in tests/integration/; here a small
server on loopback answers what each test scripts, including what the
stack rarely does on purpose (a cut body, a 503 then a 200).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fibod.client import FibodClient, Progress
from fibod.errors import (
    CancelledError,
    ConflictError,
    DownloadCutError,
    ExpiredError,
    InputError,
    NotFoundError,
    TaskFailedError,
    UnavailableError,
)

TASK = {
    "id": "a" * 32,
    "sn": 10,
    "from": 0,
    "state": "ready",
    "progress": 1.0,
    "eta_s": 0.0,
    "text_bytes": 23,
    "created": 1,
    "started": 2,
    "finished": 3,
}


@dataclass
class Answer:
    """One scripted answer: status, headers, body, and bytes the body claims."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    claimed_length: int | None = None


@dataclass
class Script:
    """Answers in order, and the requests seen (method, path, headers)."""

    answers: list[Answer]
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            script.seen.append((self.command, self.path, dict(self.headers)))
            answer = script.answers.pop(0)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            length = len(answer.body) if answer.claimed_length is None else answer.claimed_length
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
            if answer.claimed_length is not None:
                self.close_connection = True  # cut: fewer bytes than claimed

        do_GET = do_HEAD = do_DELETE = _answer

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[Script, str]]:
    script = Script([])
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_service_that_cannot_take_a_request_is_asked_again(server) -> None:
    script, url = server
    busy = Answer(503, b"task store unavailable\n", {"Retry-After": "0"})
    script.answers = [busy, busy, Answer(200, json.dumps(TASK).encode())]
    with FibodClient(url) as client:
        assert client.status("a" * 32).text_bytes == 23
    assert len(script.seen) == 3


def test_a_submit_is_not_repeated_when_it_may_have_made_a_task(server) -> None:
    # a 502 may come after an app took the request: asking again could make two tasks
    script, url = server
    script.answers = [Answer(502, b"no app answers\n")]
    with FibodClient(url) as client, pytest.raises(UnavailableError, match="HTTP 502"):
        client.submit(10)
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, b"malformed task id 'x'\n", InputError),
        (404, b"no task with id aaaa\n", NotFoundError),
        (409, b"task is already ready: nothing to cancel\n", ConflictError),
        (410, b"\x03task has expired", ExpiredError),
        (410, b"\x04task was cancelled", CancelledError),
        (500, b"\x02MemoryError: boom", TaskFailedError),
    ],
)
def test_each_answer_is_fibod_s_error_for_it(server, status, body, error) -> None:
    script, url = server
    script.answers = [Answer(status, body)]
    with FibodClient(url) as client, pytest.raises(error) as info:
        client.wait("a" * 32, timeout_s=1)
    assert body.lstrip(b"\x02\x03\x04").decode().strip() in str(info.value)


def test_waiting_reports_progress_until_ready(server) -> None:
    script, url = server
    script.answers = [
        Answer(202, b"\x01queued", {"X-Fibod-Progress": "0.0000"}),
        Answer(202, b"\x01running", {"X-Fibod-Progress": "0.2500; eta=30"}),
        Answer(206, b"\x00", {"Content-Range": "bytes 0-0/24"}),
    ]
    seen: list[Progress] = []
    with FibodClient(url) as client:
        client.wait("a" * 32, on_progress=seen.append)
    assert seen == [Progress("queued", 0.0, None), Progress("running", 0.25, 30.0)]
    # each poll asks for the first byte only: a ready result is not sent whole
    assert all(headers["Range"] == "bytes=0-0" for _, _, headers in script.seen)


def test_a_result_cut_short_is_an_error_that_says_where(server) -> None:
    script, url = server
    script.answers = [Answer(200, b"\x00" + b"0 1 1 2 3 ", claimed_length=101)]
    out = io.BytesIO()
    with FibodClient(url) as client, pytest.raises(DownloadCutError) as info:
        client.download("a" * 32, out)
    assert info.value.at == 10 and "cut at byte 10 of 100" in str(info.value)
    assert out.getvalue() == b"0 1 1 2 3 "


def test_a_resumed_result_asks_for_a_range_checked_by_the_etag(server) -> None:
    script, url = server
    etag = '"v1-text-0-10"'
    script.answers = [
        Answer(206, b"2 3 5 ", {"Content-Range": "bytes 7-12/24", "ETag": etag}),
        Answer(200, b"\x00" + b"x" * 23, {"ETag": '"v1-text-0-11"'}),
    ]
    with FibodClient(url) as client:
        resumed = client.open_result("a" * 32, offset=6, if_range=etag)
        assert (resumed.partial, resumed.offset, resumed.length) == (True, 6, 23)
        assert b"".join(resumed.chunks()) == b"2 3 5 "
        changed = client.open_result("a" * 32, offset=6, if_range=etag)
        assert (changed.partial, changed.offset, changed.etag) == (False, 0, '"v1-text-0-11"')
        assert b"".join(changed.chunks()) == b"x" * 23
    _, _, headers = script.seen[0]
    assert (headers["Range"], headers["If-Range"]) == ("bytes=7-", etag)


def test_only_http_urls_naming_a_host_are_taken() -> None:
    for bad in ("ftp://x", "127.0.0.1:8080", "http://"):
        with pytest.raises(InputError):
            FibodClient(bad)


def test_an_unknown_progress_header_is_read_as_far_as_understood() -> None:
    assert Progress.parse("running", "0.5000; eta=12; more=1") == Progress("running", 0.5, 12.0)
    assert Progress.parse("running", "soon") == Progress("running", 0.0, None)
    assert Progress.parse("queued", None) == Progress("queued", 0.0, None)


def test_a_result_left_half_read_does_not_spoil_the_next_request(server) -> None:
    # given a result of which only the first chunk is read
    script, url = server
    script.answers = [
        Answer(200, b"\x00" + b"0 1 1 2 3 " * 1000),
        Answer(200, json.dumps(TASK).encode()),
    ]
    with FibodClient(url) as client:
        stream = client.open_result("a" * 32)
        next(stream.chunks(10))
        stream.close()
        # then the next request gets its own answer, sent once
        assert client.status("a" * 32).id == "a" * 32
    assert len(script.seen) == 2
