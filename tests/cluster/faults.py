"""Faults on the rehearsal's hosts, and the checks every fault test ends with.

A host is killed the way a machine dies (every process of its namespace
gets SIGKILL at once) or cut off the way a network fails (its veth on the
bridge goes down: both directions time out). `heal` runs `cluster.py up`,
which reconnects, restarts and re-converges whatever a test broke, so the
next test starts from a whole rehearsal. Answers are checked against
gmpy2 (tests/reference.py), never against fibod's kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gmpy2
import requests

from tests.cluster.conftest import ROOT, UP_TIMEOUT_S, Rehearsal, cluster

#: One line of `cluster.py status`: HOST ROLE ADDRESS PID STATE [master|replica|controller].
STATUS_LINE = re.compile(
    r"(?P<host>\S+) (?P<role>\S+) (?P<address>\S+) (?P<pid>\d+) (?P<state>\S+)(?: (?P<extra>\S+))?"
)
#: Where the fault tests write what they measured (kept by `cluster.py down`).
FIGURES_FILE = ROOT / "var" / "cluster-figures.jsonl"
#: Longest a test waits for tasks after a fault (session timeout, lease, failover).
RECOVERY_TIMEOUT_S = 120
#: Bytes per read when checking a streamed body.
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class Process:
    """One line of `make cluster-status`."""

    host: str
    role: str
    address: str
    pid: int
    state: str
    extra: str | None


def processes() -> list[Process]:
    """Parse `cluster.py status` (it exits 1 while something is down: fine here)."""
    out = cluster("status", 60).stdout
    rows = []
    for line in out.splitlines():
        match = STATUS_LINE.fullmatch(line.strip())
        if match:
            d = match.groupdict()
            rows.append(
                Process(d["host"], d["role"], d["address"], int(d["pid"]), d["state"], d["extra"])
            )
    return rows


#: Rounds of kill -9 a host's death may take (a process may fork between rounds).
KILL_ROUNDS = 20


def kill_host(rehearsal: Rehearsal, name: str) -> list[int]:
    """Kill every process of a host (SIGKILL), as a machine dies; return the pids.

    Killed in rounds until none is left: a gunicorn master killed after
    listing may have forked a worker since, and that orphan would go on
    serving until it noticed its parent gone, cutting what it had begun.
    """
    host = rehearsal.inventory.host(name)
    namespace = rehearsal.inventory.namespace(host)
    killed: list[int] = []
    for _ in range(KILL_ROUNDS):
        out = subprocess.check_output(["ip", "netns", "pids", namespace])
        pids = [int(p) for p in out.split() if int(p) not in killed]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed.extend(pids)
        time.sleep(0.05)
    return killed


def set_link(name: str, up: bool) -> None:
    """Cut a host off (its veth on the bridge down) or reconnect it."""
    subprocess.run(["ip", "link", "set", f"vf-{name}", "up" if up else "down"], check=True)


def heal() -> float:
    """Bring every host back (`cluster.py up`); return the seconds it took."""
    started = time.monotonic()
    result = cluster("up", UP_TIMEOUT_S)
    assert result.returncode == 0, f"heal failed:\n{result.stdout}\n{result.stderr}"
    return time.monotonic() - started


def wait_for(
    check: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.1
) -> float:
    """Call check until it returns something true; return the seconds it took."""
    started = time.monotonic()
    last: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception as exc:  # a store or broker still failing over
            last = exc
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s (last error: {last!r})")
        time.sleep(step_s)


def record(test: str, **figures: object) -> None:
    """Append what a fault test measured to var/cluster-figures.jsonl."""
    line = json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures})
    print(line)
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as out:
        out.write(line + "\n")


def reference_chunks(sn: int) -> Iterator[bytes]:
    """F(0)..F(sn-1) as text from gmpy2, in blocks of about READ_BYTES."""
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)
    block: list[bytes] = []
    size = 0
    for _ in range(sn):
        text = a.digits().encode() + b" "
        block.append(text)
        size += len(text)
        if size >= READ_BYTES:
            yield b"".join(block)
            block, size = [], 0
        a, b = b, a + b
    if block:
        yield b"".join(block)


@dataclass
class Fetched:
    """What a streamed answer held, compared with the reference as it came."""

    status: int
    first: bytes
    size: int
    content_length: int | None
    #: Every byte received equals the reference at its offset.
    right_so_far: bool
    #: The body ended before Content-Length (a connection cut short).
    cut_short: bool

    @property
    def whole_and_right(self) -> bool:
        """The answer is complete and every byte is right."""
        return (
            self.status == 200
            and self.first == b"\x00"
            and self.right_so_far
            and not self.cut_short
            and self.content_length == self.size + 1
        )


class Client:
    """The rehearsal's REST API through nginx, as a client uses it."""

    def __init__(self, entry_url: str) -> None:
        self.entry_url = entry_url
        self.http = requests.Session()

    def submit(self, sn: int, timeout_s: float = 30) -> requests.Response:
        """GET /myapp/fibo?sn=N (the response, whatever its status)."""
        return self.http.get(f"{self.entry_url}/myapp/fibo", params={"sn": sn}, timeout=timeout_s)

    def task(self, task_id: str) -> dict[str, object]:
        """Return the task's JSON."""
        resp = self.http.get(f"{self.entry_url}/myapp/tasks/{task_id}", timeout=30)
        resp.raise_for_status()
        return resp.json()

    def wait_ready(self, task_id: str, timeout_s: float = RECOVERY_TIMEOUT_S) -> dict[str, object]:
        """Poll the task until ready; fail naming its last state after timeout_s."""
        seen: dict[str, object] = {}

        def ready() -> bool:
            seen.update(self.task(task_id))
            return seen["state"] in ("ready", "failed")

        wait_for(ready, timeout_s, f"task {task_id} ready ({seen})", step_s=0.2)
        return seen

    def fetch(self, task_id: str, sn: int, pause_s: float = 0.0) -> Fetched:
        """Stream a ready task, comparing each byte with gmpy2's text as it arrives.

        pause_s between reads keeps a stream in flight for a while.
        """
        url = f"{self.entry_url}/myapp/fibotask"
        reference = ReferenceReader(sn)
        with self.http.get(url, params={"id": task_id}, stream=True, timeout=60) as resp:
            length = resp.headers.get("Content-Length")
            first, size, right = b"", 0, True
            try:
                for chunk in resp.iter_content(READ_BYTES):
                    if not first:
                        first, chunk = chunk[:1], chunk[1:]
                    right = right and reference.matches(chunk)
                    size += len(chunk)
                    if pause_s:
                        time.sleep(pause_s)
                cut = False
            except requests.RequestException:
                cut = True
        expected = int(length) if length else None
        cut = cut or (expected is not None and size + 1 < expected)
        return Fetched(resp.status_code, first, size, expected, right and not reference.over, cut)


class ReferenceReader:
    """Compare consecutive pieces of a body with the reference text."""

    def __init__(self, sn: int) -> None:
        self._chunks = reference_chunks(sn)
        self._buffer = b""
        self.over = False

    def matches(self, piece: bytes) -> bool:
        """Tell whether piece is the next bytes of the reference."""
        while len(self._buffer) < len(piece):
            nxt = next(self._chunks, None)
            if nxt is None:
                self.over = True
                return False
            self._buffer += nxt
        ok = self._buffer[: len(piece)] == piece
        self._buffer = self._buffer[len(piece) :]
        return ok


@dataclass
class Load:
    """Requests sent in background threads while a fault lands; what each got."""

    client_factory: Callable[[], Client]
    threads: int
    action: Callable[[Client], tuple[int, str]]
    #: (finished at, status, detail) of each request, and when each started.
    results: list[tuple[float, int, str]] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start the threads; each repeats its action until stop()."""
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self) -> None:
        client = self.client_factory()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, detail = self.action(client)
            except requests.RequestException as exc:
                status, detail = 0, type(exc).__name__
            self.results.append((time.monotonic(), status, detail))
            self.started.append(started)

    def stop(self) -> None:
        """Stop and join the threads."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=90)


def read_log(path: Path) -> str:
    """Return a log file's text ('' if absent)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
