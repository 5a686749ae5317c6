"""Bad input and misuse through nginx: refused clearly, never harmful.

Malformed sn and ids get a 4xx with a reason; a client reading a 1 GB
stream slowly, or leaving in the middle, holds a bounded amount of
server memory, does not slow other clients, and frees what it held; a
burst of 2,000 submissions completes, computed only by the workers.
Clients that must not share nginx's per-address limits with other tests
bind their own loopback source address (127.0.0.0/8 is all local).
"""

from __future__ import annotations

import random
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.clients import fetch_sockets_sending, raw_get
from tests.integration.faults import (
    ClaimWatcher,
    peak_rss_kib,
    record,
    reset_peak_rss,
    rss_kib,
    threads,
    worker_owner,
)
from tests.integration.stack import VAR, wait_for
from tests.reference import reference_text, reference_text_bytes

pytestmark = pytest.mark.integration

BAD_SN = {
    "negative": "sn=-1",
    "minus zero": "sn=-0",
    "plus sign": "sn=%2B5",
    "float": "sn=1.5",
    "exponent": "sn=1e3",
    "hex": "sn=0x10",
    "empty": "sn=",
    "no value": "sn",
    "absent": "other=1",
    "nothing": "",
    "above max": "sn=200001",
    "huge": "sn=" + "9" * 30,
    "very long": "sn=" + "1" * 5000,
    "repeated": "sn=1&sn=2",
    "repeated same": "sn=5&sn=5",
    "leading space": "sn=%205",
    "trailing space": "sn=5%20",
    "inner space": "sn=1%202",
    "tab": "sn=5%09",
    "newline": "sn=5%0A",
    "nul": "sn=5%00",
    "arabic-indic digit": "sn=%D9%A3",
    "fullwidth digit": "sn=%EF%BC%95",
    "superscript digit": "sn=%C2%B2",
    "not utf-8": "sn=%FF",
    "letters": "sn=abc",
    "glob": "sn=*",
}


@pytest.mark.parametrize("query", BAD_SN.values(), ids=BAD_SN.keys())
def test_bad_sn_gets_400_with_a_reason(http, query: str) -> None:
    resp = http.get_path(f"/myapp/fibo?{query}")
    if len(query) > 4000:  # gunicorn's request-line limit (4094) answers first
        assert resp.status_code == 414
        return
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    reason = resp.text.strip()
    assert reason and "\n" not in reason and len(reason) < 200
    assert "sn" in reason or "query" in reason


#: A well-formed id: 32 lowercase hex digits (20, without the MAC, are the legacy form).
GOOD_ID = "0123456789abcdef0123456789abcdef"
BAD_IDS = {
    "too short": GOOD_ID[:19],
    "between the two lengths": GOOD_ID[:21],
    "one short": GOOD_ID[:31],
    "too long": GOOD_ID + "0",
    "very long": "0" * 4000,
    "upper case": GOOD_ID.upper(),
    "dot dot slash": "..%2F..%2F..%2Fetc%2Fpasswd",
    "star": "*",
    "star suffix": GOOD_ID[:31] + "*",
    "question mark": GOOD_ID[:31] + "%3F",
    "glob class": "[0-9a-f]*",
    "redis key": "fibod:task:*",
    "newline": GOOD_ID + "%0A",
    "crlf injection": GOOD_ID + "%0D%0APING",
    "nul": GOOD_ID[:31] + "%00",
    "space": GOOD_ID[:31] + "%20",
    "unicode digits": "%D9%A3" * 32,
    "empty": "",
}
ID_ROUTES = {
    "query form": "/myapp/fibotask?id={}",
    "path form": "/myapp/fibotask/id={}",
    "status": "/myapp/tasks/{}",
    "list cursor": "/myapp/tasks?cursor={}",
}


@pytest.mark.parametrize("bad_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("route", ID_ROUTES.values(), ids=ID_ROUTES.keys())
def test_bad_id_gets_a_clear_4xx(http, route: str, bad_id: str) -> None:
    resp = http.get_path(route.format(bad_id))
    # 400 from the app names the problem; nginx answers 404 for a path it
    # does not route (an empty status id) and refuses %00 and ../ escapes
    # itself with its own one-line 400
    assert resp.status_code in (400, 404), resp.text
    assert len(resp.text) < 300 and resp.text.count("\n") == 1, resp.text
    if resp.status_code == 400 and not resp.text.startswith("bad request: malformed request"):
        assert "id" in resp.text or "cursor" in resp.text
    assert b"Traceback" not in resp.content


@pytest.mark.parametrize(
    "path",
    [
        "/myapp/tasks/../../../etc/passwd",
        "/myapp/fibotask/../../etc/passwd",
        "/myapp/../openapi.yaml",
    ],
)
def test_dot_segments_never_leave_the_api(stack, path: str) -> None:
    # requests would normalise the path: send it as written
    host, port = stack.address()
    status, _, body = raw_get(host, port, path)
    assert status in (200, 400, 404)
    assert b"root:" not in body


def test_raw_newline_in_request_line_is_refused(stack) -> None:
    host, port = stack.address()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"GET /myapp/tasks/0123\n4567 HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)
    # nginx ends the request line at the newline: an HTTP/0.9 request for
    # /myapp/tasks/0123, answered with the bare reason, or a 400
    assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"malformed task id"), answer


#: A stored task of ~1 GB of text (F(0)..F(99,999)).
HUGE_SN = 100_000
#: The slow client reads this fast, for this long.
SLOW_RATE_BYTES_S = 3 * 1024 * 1024
SLOW_READ_S = 8
#: Most a fetch process's peak RSS may grow while streaming to these clients.
#: What the streams hold is bounded by design (per stream a segment, the
#: next one being read and a 512 KB text part: ~8 MB); what glibc's two
#: arenas keep around that varies from run to run: 9-48 MB measured
#: (docs/RELIABILITY.md; 47.7 MB in one CI run, against the 45 MB bound of
#: then). Buffering what was sent would show as hundreds of MB: the quitter
#: alone pulls 200 MB, the slow reader's stream is 1 GB.
RSS_GROWTH_LIMIT_KIB = 64 * 1024
#: Most a small fetch may take meanwhile, median and slowest: about 3x the
#: 10 ms and 29 ms reported.
SMALL_FETCH_MEDIAN_S = 0.030
SMALL_FETCH_MAX_S = 0.090


class StreamClient(threading.Thread):
    """Read a stream through a raw socket at a set rate, then reset it."""

    def __init__(self, host: str, port: int, path: str, source: str, rate: int, seconds: float):
        super().__init__(name=f"stream-{source}", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.sock.bind((source, 0))
        self.sock.settimeout(30)
        self.sock.connect((host, port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        self.rate, self.seconds = rate, seconds
        self.received = 0
        self.head = b""

    def run(self) -> None:
        started = time.monotonic()
        while time.monotonic() - started < self.seconds:
            chunk = self.sock.recv(64 * 1024)
            if not chunk:
                break
            if len(self.head) < 512:
                self.head += chunk[:512]
            self.received += len(chunk)
            ahead = self.received / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def reset(self) -> None:
        """Leave without reading the rest: close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


@pytest.mark.usefixtures("streamed_by_the_app")
def test_slow_reader_and_quitter_hold_bounded_resources(stack, http, supervisor) -> None:
    host, port = stack.address()
    fetch_port = int(stack.env["FIBOD_FETCH_PORT"])
    # given a stored 1 GB task and a small ready one
    huge = http.submit(HUGE_SN)
    assert http.wait_ready(huge, 120)["state"] == "ready"
    small = http.submit(3_000)
    assert http.wait_ready(small, 30)["state"] == "ready"
    pids = sorted(supervisor.processes("fetch"))  # gunicorn's master and workers
    for pid in pids:
        reset_peak_rss(pid)
    rss_before = {pid: rss_kib(pid) for pid in pids}
    threads_before = {pid: threads(pid) for pid in pids}
    temp_dir = VAR / "nginx" / "proxy"
    # when one client reads it at ~3 MB/s and another reads fast, then quits mid-stream
    slow = StreamClient(
        host, port, f"/myapp/fibotask?id={huge}", "127.0.0.41", SLOW_RATE_BYTES_S, SLOW_READ_S
    )
    quitter = StreamClient(host, port, f"/myapp/fibotask?id={huge}", "127.0.0.42", 200 << 20, 1)
    slow.start()
    quitter.start()
    small_latencies, temp_peak, in_flight_peak = [], 0, 0
    try:
        quitter.join(5)
        quitter.reset()
        while slow.is_alive():
            # then other clients are served quickly meanwhile
            started = time.monotonic()
            got = http.get_path(f"/myapp/fibotask?id={small}")
            small_latencies.append(time.monotonic() - started)
            assert got.content == b"\x00" + reference_text(0, 3_000)
            temp_peak = max(temp_peak, _dir_bytes(temp_dir))
            in_flight_peak = max(in_flight_peak, fetch_sockets_sending(fetch_port))
            time.sleep(0.25)
    finally:
        slow.join(SLOW_READ_S + 5)
        slow.reset()
    assert slow.head.startswith(b"HTTP/1.1 200") and b"\r\n\r\n\x000 1 1 2 3 5" in slow.head
    assert (
        0.5 * SLOW_RATE_BYTES_S * SLOW_READ_S < slow.received < 2 * SLOW_RATE_BYTES_S * SLOW_READ_S
    )
    assert quitter.received > 10 << 20
    # and memory stayed bounded (peak RSS), nothing was buffered to disk by nginx
    growth = {pid: peak_rss_kib(pid) - rss_before[pid] for pid in pids}
    assert max(growth.values()) < RSS_GROWTH_LIMIT_KIB, growth
    assert temp_peak < 1 << 20
    assert in_flight_peak >= 1  # the slow stream was seen pushing against nginx
    assert statistics.median(small_latencies) < SMALL_FETCH_MEDIAN_S, small_latencies
    assert max(small_latencies) < SMALL_FETCH_MAX_S, small_latencies
    # and once both have gone, the streams stop and what they held is freed
    wait_for(lambda: fetch_sockets_sending(fetch_port) == 0, 15, "fetch streams stopped")
    rss_after = wait_for(
        lambda: (
            (after := {pid: rss_kib(pid) for pid in pids})
            and all(after[p] - rss_before[p] < 16 * 1024 for p in pids)
            and after
        ),
        15,
        "fetch RSS back near its level before",
        step_s=0.5,
    )
    threads_after = {pid: threads(pid) for pid in pids}
    assert all(threads_after[p] <= threads_before[p] + 32 for p in pids), (
        threads_before,
        threads_after,
    )
    record(
        "test_slow_reader_and_quitter_hold_bounded_resources",
        slow_received_mb=round(slow.received / 2**20, 1),
        quitter_received_mb=round(quitter.received / 2**20, 1),
        rss_before_mb={p: round(v / 1024, 1) for p, v in rss_before.items()},
        rss_peak_growth_mb={p: round(v / 1024, 1) for p, v in growth.items()},
        rss_after_mb={p: round(v / 1024, 1) for p, v in rss_after.items()},
        threads_before=threads_before,
        threads_after=threads_after,
        nginx_temp_peak_bytes=temp_peak,
        small_fetch_median_s=round(statistics.median(small_latencies), 3),
        small_fetch_max_s=round(max(small_latencies), 3),
    )


#: The burst: this many submissions, from this many loopback addresses
#: (each stays inside nginx's per-address burst of 400, so none is paced).
BURST_TASKS = 2_000
BURST_SOURCES = 8
#: Largest sn of the burst; most are small.
BURST_MAX_SN = 20_000
#: Most a probing client's submit may take during the burst, median and
#: slowest: about 3x the 8 ms and 160 ms reported.
PROBE_MEDIAN_S = 0.024
PROBE_MAX_S = 0.480


def _submit_from(base: tuple[str, int], source: str, sns: list[int]) -> list[tuple[int, int, str]]:
    """Submit each sn over one keep-alive connection bound to `source`."""
    import http.client

    conn = http.client.HTTPConnection(*base, timeout=30, source_address=(source, 0))
    out = []
    try:
        for sn in sns:
            conn.request("GET", f"/myapp/fibo?sn={sn}")
            resp = conn.getresponse()
            out.append((sn, resp.status, resp.read().decode()))
    finally:
        conn.close()
    return out


def test_burst_of_2000_submissions_all_complete(
    stack, http, sequence_redis, sequence_store, supervisor
) -> None:
    base: tuple[str, int] = stack.address()
    rng = random.Random(2000)
    sns = [rng.randint(1, 2_000) for _ in range(BURST_TASKS - 40)]
    sns += [rng.randint(2_001, BURST_MAX_SN) for _ in range(40)]
    rng.shuffle(sns)
    workers = {worker_owner(pid) for pid in supervisor.pids("worker:")}
    probe_latencies: list[tuple[int, float]] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            status, _, _ = raw_get(*base, "/myapp/fibo?sn=5", source="127.0.0.99")
            probe_latencies.append((status, time.monotonic() - started))
            time.sleep(0.1)

    # given an empty sequence store, a watcher of every compute claim and a probing client
    sequence_store.clear()
    before = sequence_store.counters()
    watcher, prober = ClaimWatcher(sequence_redis), threading.Thread(target=probe)
    watcher.start()
    prober.start()
    try:
        # when 2,000 submissions arrive at once from 8 addresses
        started = time.monotonic()
        slices = [sns[i::BURST_SOURCES] for i in range(BURST_SOURCES)]
        with ThreadPoolExecutor(BURST_SOURCES) as pool:
            answers = [
                a
                for part in pool.map(
                    _submit_from,
                    [base] * BURST_SOURCES,
                    [f"127.0.0.{10 + i}" for i in range(BURST_SOURCES)],
                    slices,
                )
                for a in part
            ]
        submit_s = time.monotonic() - started
        # then every one is accepted
        assert [a for a in answers if a[1] != 202] == []
        # and every task completes with the right text length
        pending = {task_id: sn for sn, _, task_id in answers}
        deadline = time.monotonic() + 120
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} tasks not ready in 120 s"
            for task_id in list(pending)[:200]:
                task = http.status(task_id)
                if task["state"] == "ready":
                    assert task["text_bytes"] == reference_text_bytes(pending.pop(task_id))
                else:
                    assert task["state"] in ("queued", "running"), task
                    time.sleep(0.05)
                    break
        all_ready_s = time.monotonic() - started
    finally:
        done.set()
        watcher.stop()
        prober.join(10)
    # and a sample streams byte for byte
    sample = rng.sample(answers, 12) + sorted(answers, key=lambda a: -a[0])[:2]
    for sn, _, task_id in sample:
        assert http.fetch(task_id).content == b"\x00" + reference_text(0, sn)
    # and only the worker processes computed, at most one segment each at a time:
    # the watcher saw a claim for every segment computed, and whose they were
    after = sequence_store.counters()
    computed = sum(after[c] - before[c] for c in ("segments_computed", "segments_duplicate"))
    assert watcher.claims >= computed > 0, (watcher.claims, computed)
    assert watcher.owners and watcher.owners <= workers, (watcher.owners, workers)
    assert watcher.most_held <= len(workers)
    # and the submit endpoint kept answering a probing client quickly
    assert probe_latencies and all(status == 202 for status, _ in probe_latencies)
    latencies = sorted(lat for _, lat in probe_latencies)
    assert statistics.median(latencies) < PROBE_MEDIAN_S, latencies
    assert latencies[-1] < PROBE_MAX_S, latencies
    record(
        "test_burst_of_2000_submissions_all_complete",
        submit_s=round(submit_s, 2),
        submit_rate_per_s=round(BURST_TASKS / submit_s),
        all_ready_s=round(all_ready_s, 2),
        probes=len(latencies),
        probe_median_s=round(statistics.median(latencies), 3),
        probe_max_s=round(latencies[-1], 3),
        segments_computed=computed,
        claims_seen=watcher.claims,
        most_claims_at_once=watcher.most_held,
        claim_owners=sorted(watcher.owners),
    )
