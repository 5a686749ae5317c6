"""The text cache on the real stack: nginx sends ready bodies from files.

A body is written to the fetch host's text cache in the background when
it is asked for again; later GETs are answered by the fetch app with
X-Accel-Redirect and sent by nginx (`X-Fibod-Cache: hit`). Every answer
must be what the app's own stream gives: the same status, bytes and
headers, for ranges, If-Range, 304 and HEAD. Slow readers are held by
nginx, and a reader that stops is cut after FIBOD_SEND_TIMEOUT_S.
"""

from __future__ import annotations

import os
import select
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest
import requests

from fibod.ranges import http_date
from fibod.textcache import TextCache, file_name
from tests.integration.clients import Client, fetch_sockets_sending, no_fill_under_way
from tests.integration.faults import record
from tests.integration.stack import Stack, wait_for
from tests.reference import reference_digest, reference_text

pytestmark = pytest.mark.integration

#: A result of a few segments, cheap to check byte for byte (~41 MB).
SN = 20_000
#: Headers the app's stream and nginx's file answer must agree on.
COMPARED = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "ETag",
    "Last-Modified",
    "Accept-Ranges",
    "X-Fibod-State",
)


def _streamed_bytes(store) -> int:
    return int(store.counters()["bytes_streamed"])


def _settled(store, start: int, size: int) -> int:
    """Wait until the app counted size bytes streamed since start (counts are flushed apart)."""
    return wait_for(
        lambda: (now := _streamed_bytes(store)) - start == size and now, 10, "bytes counted"
    )


def _cached(http: Client, url: str) -> bool:
    resp = http.get_path(url, headers={"Range": "bytes=0-0"})
    return resp.headers.get("X-Fibod-Cache") == "hit"


@pytest.fixture
def ready_url(http: Client, text_cache: TextCache) -> str:
    """A ready result of SN numbers, not in the text cache."""
    text_cache.clear()
    task_id = http.submit(SN)
    assert http.wait_ready(task_id, 120)["state"] == "ready"
    return f"/myapp/fibotask?id={task_id}"


def test_a_warm_fetch_is_sent_by_nginx_from_the_cache_file(
    http: Client, ready_url: str, sequence_store, settings
) -> None:
    reference = b"\x00" + reference_text(0, SN)
    # given a ready result not in the cache: streamed by the app
    first = http.get_path(ready_url)
    assert "X-Fibod-Cache" not in first.headers
    assert first.content == reference
    path = Path(settings.text_cache_dir) / file_name(first.headers["ETag"])
    # and asked for again (its first byte, until a fetch process saw it twice): now a file
    wait_for(lambda: _cached(http, ready_url), 30, "the body written to the text cache")
    assert path.stat().st_size == len(reference)
    # when it is fetched again, in each format
    time.sleep(1)  # the app's counts of the streams before are flushed apart
    before = _streamed_bytes(sequence_store)
    again = http.get_path(ready_url)
    # then nginx sent the file: the app streamed nothing, and every byte is right
    assert again.headers["X-Fibod-Cache"] == "hit"
    assert again.content == reference
    time.sleep(0.5)  # a count would have been flushed by now
    assert _streamed_bytes(sequence_store) == before
    for name in COMPARED:
        assert again.headers.get(name) == first.headers.get(name), name
    for fmt, sep in (("lines", "\n"), ("binary", None)):
        url = f"{ready_url}&format={fmt}"
        streamed = http.get_path(url)
        wait_for(lambda u=url: _cached(http, u), 30, f"format={fmt} in the text cache")
        sent = http.get_path(url)
        assert sent.headers["X-Fibod-Cache"] == "hit"
        assert sent.content == streamed.content
        if sep is not None:
            assert sent.content == b"\x00" + reference_text(0, SN, sep)
        for name in COMPARED:
            assert sent.headers.get(name) == streamed.headers.get(name), (fmt, name)


def _answers(
    http: Client, url: str, cases: list[tuple[str, dict[str, str]]], clear: TextCache | None
) -> list[tuple[int, bytes, dict[str, str | None], str | None]]:
    """Ask each case; with `clear`, empty the cache first, so the app answers."""
    out = []
    for method, headers in cases:
        if clear is not None:
            wait_for(lambda: no_fill_under_way(clear), 30, "the last fill done")
            clear.clear()
        resp = http.request(method, http.base_url + url, headers=headers, timeout=60)
        kept = {name: resp.headers.get(name) for name in COMPARED}
        out.append((resp.status_code, resp.content, kept, resp.headers.get("X-Fibod-Cache")))
    return out


def test_ranges_if_range_304_and_head_answer_as_the_apps_stream(
    http: Client, ready_url: str, text_cache: TextCache, task_store
) -> None:
    # given a ready result in the cache, its validators known
    head = http.head(http.base_url + ready_url, timeout=30)
    etag, length = head.headers["ETag"], int(head.headers["Content-Length"])
    http.get_path(ready_url, stream=True).close()
    wait_for(lambda: _cached(http, ready_url), 30, "the body in the text cache")
    task_id = ready_url.rsplit("=", 1)[1]
    finished = task_store.lookup(task_id).finished
    date, stale_date = http_date(finished), http_date(finished - 86_400_000)
    ranges = ["bytes=0-0", "bytes=1000-2000000", f"bytes={length - 9}-", "bytes=-5000"]
    cases: list[tuple[str, dict[str, str]]] = [("GET", {"Range": r}) for r in ranges]
    cases += [
        # forms the app reads its own way: it keeps answering them itself
        ("GET", {"Range": "bytes=0-3,10-20"}),
        ("GET", {"Range": "bytes = 5-9"}),
        ("GET", {"Range": "BYTES=5-9"}),
        ("GET", {"Range": "bytes=9-5"}),
        ("GET", {"Range": "bytes=abc"}),
        ("GET", {"Range": f"bytes={length}-"}),
        ("GET", {"Range": "bytes=-0"}),
        ("GET", {"Range": "bytes=100-199", "If-Range": etag}),
        ("GET", {"Range": "bytes=100-199", "If-Range": '"v1-text-0-19999"'}),
        ("GET", {"Range": "bytes=100-199", "If-Range": "W/" + etag}),
        ("GET", {"Range": "bytes=100-199", "If-Range": date}),
        ("GET", {"Range": "bytes=100-199", "If-Range": stale_date}),
        ("GET", {"If-None-Match": etag}),
        ("GET", {"If-None-Match": '"other", ' + etag}),
        ("GET", {"If-None-Match": '"other"'}),
        ("GET", {"If-Modified-Since": date}),
        ("GET", {"If-Match": '"other"'}),
        ("GET", {"If-Unmodified-Since": stale_date}),
        ("HEAD", {}),
        ("HEAD", {"Range": "bytes=0-9"}),
    ]
    # when each is asked with the body cached (nginx may send it) ...
    cached = _answers(http, ready_url, cases, clear=None)
    # ... and with the cache emptied before each (the app streams it)
    streamed = _answers(http, ready_url, cases, clear=text_cache)
    # then both give the same status, bytes and headers
    for case, hit, app in zip(cases, cached, streamed, strict=True):
        assert hit[:3] == app[:3], case
    # and nginx sent the plain ranges, the whole bodies and the checked If-Range
    sent_by_nginx = [case for case, hit in zip(cases, cached, strict=True) if hit[3] == "hit"]
    assert [("GET", {"Range": r}) for r in ranges] == sent_by_nginx[: len(ranges)]
    assert ("GET", {"Range": "bytes=100-199", "If-Range": date}) in sent_by_nginx
    assert ("GET", {"Range": "bytes=0-3,10-20"}) in sent_by_nginx  # whole, as the app would
    assert all(hit[3] is None for hit in streamed)


def test_a_cut_cache_file_is_never_served(
    http: Client, ready_url: str, settings, sequence_store
) -> None:
    reference = b"\x00" + reference_text(0, SN)
    # given a result in the cache
    http.get_path(ready_url, stream=True).close()
    wait_for(lambda: _cached(http, ready_url), 30, "the body in the text cache")
    name = file_name(http.head(http.base_url + ready_url, timeout=30).headers["ETag"])
    path = Path(settings.text_cache_dir) / name
    # when its file is cut short (a full disk, a hand)
    os.truncate(path, path.stat().st_size // 2)
    before = _streamed_bytes(sequence_store)
    resp = http.get_path(ready_url)
    # then the app streams it whole instead, every byte right, and writes it again
    assert "X-Fibod-Cache" not in resp.headers
    assert resp.content == reference
    _settled(sequence_store, before, len(reference) - 1)
    wait_for(lambda: _cached(http, ready_url), 30, "the body written again")
    assert path.stat().st_size == len(reference)
    assert http.get_path(ready_url).content == reference


#: The slow readers: this many, from this many loopback addresses (nginx
#: allows FIBOD_FETCH_CONN_LIMIT fetches per address), each reading this fast.
SLOW_READERS = 64
SLOW_SOURCES = 8
SLOW_RATE_BYTES_S = 1024
SLOW_READ_S = 20
#: A large ready result for them (~376 MB: none reaches its end).
SLOW_SN = 60_000
#: The issue's bound on a small fetch meanwhile.
SMALL_FETCH_P99_S = 0.100


class Reader(threading.Thread):
    """A raw HTTP GET read at a set rate; rate 0 stops reading after the headers."""

    def __init__(self, stack: Stack, path: str, source: str, rate: int) -> None:
        super().__init__(name=f"reader-{source}", daemon=True)
        host, port = stack.address()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind((source, 0))
        self.sock.settimeout(30)
        self.sock.connect((host, port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.rate = rate
        self.head = b""
        self.received = 0
        self.stop = threading.Event()
        self.closed_at: float | None = None

    def run(self) -> None:
        started = time.monotonic()
        while b"\r\n\r\n" not in self.head:
            self.head += self.sock.recv(512)
        self.received = len(self.head.split(b"\r\n\r\n", 1)[1])
        if self.rate == 0:  # a stalled client: never reads again, waits to be cut
            poller = select.poll()
            poller.register(self.sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
            while not self.stop.is_set() and not poller.poll(200):
                pass
            if not self.stop.is_set():
                self.closed_at = time.monotonic()
            return
        while not self.stop.is_set():
            chunk = self.sock.recv(256)
            if not chunk:
                self.closed_at = time.monotonic()
                return
            self.received += len(chunk)
            ahead = self.received / self.rate - (time.monotonic() - started)
            if ahead > 0:
                self.stop.wait(ahead)

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.sock.close()


def test_slow_readers_hold_no_fetch_thread_and_a_stalled_one_is_cut(
    stack: Stack, http: Client, settings, text_cache: TextCache
) -> None:
    send_timeout_s = settings.send_timeout_s
    fetch_port = settings.fetch_port
    # given a large ready result in the cache, another one not in it, and a small one
    big = http.submit(SLOW_SN)
    other = http.submit(SLOW_SN - 1)
    small = http.submit(3_000)
    for task_id in (big, other, small):
        assert http.wait_ready(task_id, 120)["state"] == "ready"
    text_cache.clear()
    big_url = f"/myapp/fibotask?id={big}"
    http.get_path(big_url, headers={"Range": "bytes=0-0"})
    wait_for(lambda: _cached(http, big_url), 60, "the large body in the text cache")
    small_reference = b"\x00" + reference_text(0, 3_000)
    assert http.get_path(f"/myapp/fibotask?id={small}").content == small_reference
    # when 64 clients read it at 1 KB/s, one from the cache stops reading, and
    # one stops reading a body the app streams (its first fetch: not cached yet)
    readers = [
        Reader(stack, big_url, f"127.0.0.{60 + i % SLOW_SOURCES}", SLOW_RATE_BYTES_S)
        for i in range(SLOW_READERS)
    ]
    stalled = Reader(stack, big_url, "127.0.0.70", 0)
    text_cache_miss = Reader(stack, f"/myapp/fibotask?id={other}", "127.0.0.71", 0)
    started = time.monotonic()
    for reader in [*readers, stalled, text_cache_miss]:
        reader.start()
    latencies = []
    try:
        while time.monotonic() - started < SLOW_READ_S:
            # then a normal small fetch still answers at once
            asked = time.monotonic()
            resp = http.get_path(f"/myapp/fibotask?id={small}")
            latencies.append(time.monotonic() - asked)
            assert resp.content == small_reference
            time.sleep(0.05)
        # and the slow readers were all being served from the cache file
        assert all(r.head.startswith(b"HTTP/1.1 200") for r in readers)
        assert all(b"X-Fibod-Cache: hit" in r.head for r in readers)
        assert all(r.closed_at is None and r.received > 0 for r in readers)
        assert b"X-Fibod-Cache" not in text_cache_miss.head
        assert fetch_sockets_sending(fetch_port) >= 1  # the uncached stream, stuck
        for reader in readers:
            reader.close()
        # and the stalled clients lose their connections after the send timeout
        wait_for(
            lambda: stalled.closed_at and text_cache_miss.closed_at,
            send_timeout_s + 20,
            "stalled clients cut",
            step_s=0.2,
        )
    finally:
        for reader in [*readers, stalled, text_cache_miss]:
            reader.close()
    assert stalled.closed_at is not None and text_cache_miss.closed_at is not None
    cut_s = [stalled.closed_at - started, text_cache_miss.closed_at - started]
    assert all(0.8 * send_timeout_s < s < send_timeout_s + 15 for s in cut_s), cut_s
    # and the app's stream to the stalled one stopped too: its thread is free
    wait_for(lambda: fetch_sockets_sending(fetch_port) == 0, 15, "the app's stream ended")
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < SMALL_FETCH_P99_S, sorted(latencies)[-5:]
    record(
        "test_slow_readers_hold_no_fetch_thread_and_a_stalled_one_is_cut",
        slow_readers=SLOW_READERS,
        slow_rate_bytes_s=SLOW_RATE_BYTES_S,
        small_fetches=len(latencies),
        small_fetch_median_s=round(statistics.median(latencies), 4),
        small_fetch_p99_s=round(p99, 4),
        small_fetch_max_s=round(max(latencies), 4),
        send_timeout_s=send_timeout_s,
        stalled_cut_s={"cached": round(cut_s[0], 1), "streamed": round(cut_s[1], 1)},
    )


def test_a_cached_body_matches_the_reference_digest(http: Client, text_cache: TextCache) -> None:
    # given a larger result (~376 MB) sent from the cache
    task_id = http.submit(SLOW_SN)
    assert http.wait_ready(task_id, 120)["state"] == "ready"
    url = f"/myapp/fibotask?id={task_id}"
    http.get_path(url, headers={"Range": "bytes=0-0"})
    wait_for(lambda: _cached(http, url), 60, "the body in the text cache")
    # when it is streamed through the user's client
    got = http.stream_digest(task_id)
    # then every byte equals gmpy2's text
    reference = reference_digest(SLOW_SN)
    assert (got.size, got.sha256) == (reference.size, reference.sha256)
    assert requests.codes.ok == got.status
