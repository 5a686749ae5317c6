"""The user's side over HTTP, through nginx: the original client, validators, ranges.

The original client is played here as it behaves (its strict task object,
its Accept headers, a poll every 3 s, the first byte, the rest to a file);
every other check compares with tests/reference.py.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from tests.reference import reference_digest, reference_text

pytestmark = pytest.mark.integration

#: The original client polls this often, seconds.
ORIGINAL_POLL_S = 3.0
#: Spans many segments (~65 MB of text); below 20,000 the reference is cached.
MANY_SEGMENTS_SN = 25_000


@dataclass(frozen=True)
class OriginalTask:
    """The original design's task object, read as strictly as Jackson's defaults do."""

    id: str
    sn: int
    state: int
    createTime: int  # the wire name

    @classmethod
    def strict(cls, body: bytes) -> OriginalTask:
        """Refuse an unknown or missing field, or a field of another type."""
        data = json.loads(body)
        names = [f.name for f in fields(cls)]
        assert sorted(data) == sorted(names), f"fields {sorted(data)}, expected {names}"
        for f in fields(cls):
            kind = str if f.type == "str" else int
            value = data[f.name]
            assert type(value) is kind, f"{f.name}={value!r} is not {kind.__name__}"
        return cls(**data)


def original_client(host: str, port: int, sn: int, out: Path, timeout_s: float = 120) -> None:
    """Do what the original client does, byte for byte."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("GET", f"/myapp/fibo?sn={sn}", headers={"Accept": "application/json"})
        resp = conn.getresponse()
        task = OriginalTask.strict(resp.read())
        assert resp.status == 202 and task.sn == sn and task.state in (0, 1)
        deadline = time.monotonic() + timeout_s
        while True:
            conn.request(
                "GET",
                f"/myapp/fibotask?id={task.id}",
                headers={"Accept": "application/octet-stream"},
            )
            resp = conn.getresponse()
            if resp.read(1) == b"\x00":
                with open(out, "wb") as file:
                    while chunk := resp.read(1 << 20):
                        file.write(chunk)
                return
            resp.read()
            assert time.monotonic() < deadline, f"task {task.id} not ready in {timeout_s} s"
            time.sleep(ORIGINAL_POLL_S)
    finally:
        conn.close()


def _sha256(path: Path, skip: int = 0) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(skip)
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


@pytest.mark.parametrize("sn", [0, 1, 10, 3000, MANY_SEGMENTS_SN])
def test_the_original_client_works_unchanged(stack, tmp_path: Path, sn: int) -> None:
    # given the original client, as it behaves
    out = tmp_path / "fib.txt"
    # when it submits, polls and saves
    original_client(*stack.address(), sn, out)
    # then its file holds exactly F(0)..F(sn-1), each number followed by a space
    reference = reference_digest(sn)
    assert out.stat().st_size == reference.size
    assert _sha256(out) == reference.sha256


def test_without_accept_json_the_submit_answers_the_bare_id(http) -> None:
    resp = http.get_path("/myapp/fibo", params={"sn": 5})
    assert resp.status_code == 202
    assert re.fullmatch(r"[0-9a-f]{32}", resp.text)
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert resp.headers["Location"] == f"/myapp/tasks/{resp.text}"
    # and the richer JSON is at the Location
    rich = http.get_path(resp.headers["Location"]).json()
    assert (rich["id"], rich["sn"], rich["from"]) == (resp.text, 5, 0)


@pytest.fixture(scope="module")
def ready_id(stack) -> str:
    """A ready task of many segments (F(0)..F(19,999), ~42 MB of text)."""
    from tests.integration.clients import Client

    with Client(stack.base_url) as client:
        task_id = client.submit(20_000)
        client.fibod.wait(task_id, timeout_s=120)
        return task_id


def test_a_ready_result_has_validators_head_and_304(http, ready_id: str, settings) -> None:
    # given a ready result
    url = f"/myapp/fibotask?id={ready_id}"
    got = http.get_path(url, stream=True)
    got.close()
    # then it has a strong ETag, offers ranges, and may be kept while the task lives
    etag = got.headers["ETag"]
    assert etag == '"v1-text-0-20000"'
    assert got.headers["Accept-Ranges"] == "bytes"
    max_age = int(got.headers["Cache-Control"].removeprefix("public, max-age="))
    assert settings.task_ttl_s - 120 < max_age <= settings.task_ttl_s
    assert "Last-Modified" in got.headers
    # and HEAD answers the same headers and no body, through nginx
    head = http.head(http.base_url + url, timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(1 + len(reference_text(0, 20_000)))
    assert head.headers["ETag"] == etag
    # and If-None-Match with it is 304, with no body
    again = http.get_path(url, headers={"If-None-Match": etag})
    assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)


@pytest.mark.parametrize("fmt", ["text", "lines", "binary"])
def test_any_single_range_is_206_with_exactly_those_bytes(http, ready_id: str, fmt: str) -> None:
    # given the whole body of a ready result
    url = f"/myapp/fibotask?id={ready_id}&format={fmt}"
    whole = http.get_path(url).content
    if fmt != "binary":
        assert whole == b"\x00" + reference_text(0, 20_000, "\n" if fmt == "lines" else " ")
    length = len(whole)
    # when ranges are asked for: the first byte, spans over segment ends, suffixes, open ends
    rng = random.Random(fmt)
    ranges = [(0, 0), (0, 99), (1, 1 << 20), (length - 1, length - 1)]
    ranges += [(a, a + rng.randrange(1, 3 << 20)) for a in rng.sample(range(length), 12)]
    for first, last in ranges:
        resp = http.get_path(url, headers={"Range": f"bytes={first}-{last}"})
        # then each is 206 with those bytes, and says where they are
        last = min(last, length - 1)
        assert resp.status_code == 206, (first, last)
        assert resp.content == whole[first : last + 1], (first, last)
        assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{length}"
    suffix = http.get_path(url, headers={"Range": "bytes=-1000"})
    assert suffix.content == whole[-1000:]
    tail = http.get_path(url, headers={"Range": f"bytes={length - 7}-"})
    assert tail.content == whole[-7:]


def test_a_range_past_the_end_is_416_and_a_changed_result_is_sent_whole(
    http, ready_id: str
) -> None:
    url = f"/myapp/fibotask?id={ready_id}"
    length = 1 + len(reference_text(0, 20_000))
    past = http.get_path(url, headers={"Range": f"bytes={length}-"})
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{length}"
    # If-Range with another ETag: the bytes may differ, so all of them come (200)
    stale = http.get_path(url, headers={"Range": "bytes=100-", "If-Range": '"v1-text-0-19999"'})
    assert stale.status_code == 200 and len(stale.content) == length
    fresh = http.get_path(url, headers={"Range": "bytes=100-", "If-Range": '"v1-text-0-20000"'})
    assert fresh.status_code == 206 and len(fresh.content) == length - 100
