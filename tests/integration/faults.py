"""Fault injection on the running stack, and the checks that follow a fault.

`Supervisor` drives the stack's supervisord (stop, start, pid, wait until
RUNNING); `restore` brings every program back, so a test that stopped,
killed or froze one leaves the stack healthy even when it fails. The
segment checks read the sequence store directly and compare with gmpy2,
never with fibod's kernel.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import redis

from fibod import keys
from fibod.errors import SegmentError
from fibod.segments import SegmentLayout, validate_segment
from tests.reference import gmpy2_run, segment_numbers_by_hand

ROOT = Path(__file__).resolve().parents[2]
SV_CONF = ROOT / "var" / "conf" / "supervisord.conf"
SUPERVISORCTL = ROOT / ".venv" / "bin" / "supervisorctl"
#: Longest wait for a program to be RUNNING again (Kafka needs ~5-10 s).
RESTORE_TIMEOUT_S = 90

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout_s: float, what: str, step_s: float = 0.05) -> T:
    """Call check until it returns a truthy value; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
        except Exception as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not reached in {timeout_s} s (last error: {last_error!r})"
            )
        time.sleep(step_s)


class Supervisor:
    """The stack's supervisord, through supervisorctl."""

    def ctl(self, *args: str, timeout_s: float = 120) -> str:
        """Run supervisorctl; return its output (exit status is not checked)."""
        result = subprocess.run(
            [str(SUPERVISORCTL), "-c", str(SV_CONF), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        return result.stdout + result.stderr

    def states(self) -> dict[str, str]:
        """Return program name -> state (RUNNING, STOPPED, BACKOFF, ...)."""
        out: dict[str, str] = {}
        for line in self.ctl("status").splitlines():
            words = line.split()
            if len(words) >= 2:
                out[words[0]] = words[1]
        return out

    def pid(self, name: str) -> int:
        """Return the pid of a RUNNING program; fail if it has none."""
        text = self.ctl("pid", name).strip()
        assert text.isdigit() and int(text) > 0, f"{name} has no pid: {text!r}"
        return int(text)

    def stop(self, name: str) -> None:
        """Stop a program (TERM, then KILL after its stopwaitsecs)."""
        self.ctl("stop", name)

    def start(self, name: str) -> None:
        """Start a program; supervisorctl waits for its startsecs."""
        self.ctl("start", name)

    def wait_running(self, names: Iterable[str], timeout_s: float = RESTORE_TIMEOUT_S) -> None:
        """Wait until every named program is RUNNING."""
        wanted = list(names)
        wait_for(
            lambda: all(self.states().get(n) == "RUNNING" for n in wanted),
            timeout_s,
            f"programs RUNNING: {wanted} (now {self.states()})",
            step_s=0.2,
        )

    def kill_and_hold(self, name: str) -> int:
        """Kill a program with SIGKILL and keep it down; return the killed pid.

        Supervisor restarts a killed program at once (autorestart), so the
        process it started is stopped too, with SIGKILL: a JVM still
        starting up would hold a TERM for its whole stopwaitsecs.
        """
        victim = self.pid(name)
        os.kill(victim, signal.SIGKILL)
        stopper = threading.Thread(target=self.stop, args=(name,), daemon=True)
        stopper.start()
        deadline = time.monotonic() + 30
        while stopper.is_alive() and time.monotonic() < deadline:
            text = self.ctl("pid", name).strip()
            if text.isdigit() and int(text) not in (0, victim):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(text), signal.SIGKILL)
            stopper.join(0.2)
        assert self.states().get(name) == "STOPPED", self.states()
        return victim

    def restore(self) -> None:
        """Continue frozen programs, start stopped ones, wait for all."""
        states = self.states()
        for name, state in states.items():
            if state == "RUNNING":
                with contextlib.suppress(AssertionError, ProcessLookupError):
                    os.kill(self.pid(name), signal.SIGCONT)
            elif state in ("STOPPED", "EXITED", "FATAL", "BACKOFF"):
                self.start(name)
        self.wait_running(states)


def worker_owner(pid: int) -> str:
    """Return the owner id a worker with this pid writes into its claims."""
    return f"{socket.gethostname()}:{pid}"


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB (VmRSS)."""
    return _status_field(pid, "VmRSS")


def threads(pid: int) -> int:
    """Return a process's thread count."""
    return _status_field(pid, "Threads")


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for pid {pid}")


def pgrep(pattern: str) -> list[int]:
    """Return the pids whose command line contains pattern."""
    result = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [int(p) for p in result.stdout.split() if int(p) != os.getpid()]


def claims(sequence_redis: redis.Redis, segment_bytes: int) -> dict[int, str]:
    """Return segment -> owner of every live claim of a layout."""
    prefix = f"{keys.CLAIM_PREFIX}{segment_bytes}:"
    found = list(sequence_redis.scan_iter(match=prefix + "*", count=1000))
    if not found:
        return {}
    owners = sequence_redis.mget(found)
    return {
        int(k.decode()[len(prefix) :]): v.decode()
        for k, v in zip(found, owners, strict=True)
        if v is not None
    }


def ghost_claim(sequence_redis: redis.Redis, layout: SegmentLayout, j: int, hold_ms: int) -> None:
    """Claim segment j for a worker that went silent, for hold_ms."""
    sequence_redis.set(keys.claim_key(layout.segment_bytes, j), b"ghost", px=hold_ms)


def drop_ghost_claims(sequence_redis: redis.Redis, layout: SegmentLayout) -> None:
    """Delete the claims `ghost_claim` made (after a failed test)."""
    for j, owner in claims(sequence_redis, layout.segment_bytes).items():
        if owner == "ghost":
            sequence_redis.delete(keys.claim_key(layout.segment_bytes, j))


@dataclass
class SegmentReport:
    """What the stored segments of a task looked like after a fault."""

    checked: int = 0
    compared_with_gmpy2: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_segments(
    sequence_redis: redis.Redis, layout: SegmentLayout, sn: int, sample: int = 4
) -> SegmentReport:
    """Validate every stored segment of F(0..sn-1); compare a sample with gmpy2."""
    report = SegmentReport()
    js = list(layout.covering(sn))
    picked = set(random.sample(js, min(sample, len(js)))) | {js[0], js[-1]}
    for j in js:
        segment = sequence_redis.get(keys.segment_key(layout.segment_bytes, j))
        if segment is None:
            report.problems.append(f"segment {j} missing")
            continue
        try:
            header = validate_segment(segment)
        except SegmentError as exc:
            report.problems.append(f"segment {j} invalid: {exc}")
            continue
        report.checked += 1
        if (header.start, header.count) != layout.bounds(j):
            report.problems.append(f"segment {j} holds F({header.start})+{header.count}")
        elif j in picked:
            if segment_numbers_by_hand(segment) != gmpy2_run(header.start, header.count):
                report.problems.append(f"segment {j} differs from gmpy2")
            report.compared_with_gmpy2.append(j)
    return report


class SegmentReader(threading.Thread):
    """Read stored segments over and over, as a fetch does, and check each.

    Counts reads and any segment that is partial or fails validation, to
    show that a reader sees either nothing or a whole, valid segment.
    """

    def __init__(self, sequence_redis: redis.Redis, layout: SegmentLayout, sn: int) -> None:
        super().__init__(name="segment-reader", daemon=True)
        self._redis = sequence_redis
        self._layout = layout
        self._js = list(layout.covering(sn))
        self._done = threading.Event()
        self.reads = 0
        self.absent = 0
        self.store_errors = 0
        self.bad: list[str] = []

    def run(self) -> None:
        """Read a random segment of the task, validate it, repeat."""
        while not self._done.is_set():
            j = random.choice(self._js)
            try:
                segment = self._redis.get(keys.segment_key(self._layout.segment_bytes, j))
            except redis.RedisError:
                self.store_errors += 1
                time.sleep(0.05)
                continue
            if segment is None:
                self.absent += 1
                time.sleep(0.002)
                continue
            self.reads += 1
            try:
                header = validate_segment(segment)
                if (header.start, header.count) != self._layout.bounds(j):
                    self.bad.append(f"segment {j}: wrong range")
            except SegmentError as exc:
                self.bad.append(f"segment {j}: {exc} ({len(segment)} bytes)")
            time.sleep(0.002)

    def stop(self) -> None:
        """Stop reading and wait for the thread."""
        self._done.set()
        self.join(timeout=10)


@contextlib.contextmanager
def reading(sequence_redis: redis.Redis, layout: SegmentLayout, sn: int) -> Iterator[SegmentReader]:
    """Run a SegmentReader for the length of a block."""
    reader = SegmentReader(sequence_redis, layout, sn)
    reader.start()
    try:
        yield reader
    finally:
        reader.stop()


def group_members(bootstrap: str, group: str) -> dict[str, list[int]]:
    """Return client id -> assigned partitions of each consumer group member."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return {
        m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
        for m in description.members
    }


FIGURES_FILE = ROOT / "var" / "log" / "fault-figures.jsonl"


def record(test: str, **figures: object) -> None:
    """Append what a fault test measured to var/log/fault-figures.jsonl."""
    import json

    line = json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures})
    print(line)
    with FIGURES_FILE.open("a") as out:
        out.write(line + "\n")


def task_on_every_partition(stack: object, sn: int = 7) -> list[str]:
    """Create a task and queue it on each partition of the task topic; return ids.

    A partition nobody reads (e.g. left paused after a rebalance) leaves
    its task queued, which a check of these ids then shows.
    """
    from fibod.config import Settings
    from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
    from fibod.redis_client import connect
    from fibod.tasks import TaskStore

    settings = Settings.from_env(stack.env)  # type: ignore[attr-defined]
    tasks = TaskStore(connect(settings.task_redis_url, settings, decode=True), settings.task_ttl_s)
    publisher = TaskPublisher.from_settings(settings, "fibod-test-partitions")
    ids = []
    try:
        for partition in range(settings.task_partitions):
            task = tasks.create(sn)
            publisher.publish(QueueMessage(KIND_TASK, task.id, sn), partition)
            ids.append(task.id)
    finally:
        publisher.close()
    return ids
