"""Fault injection on the running stack, and the checks that follow a fault.

Ghost claims, process figures, Kafka group and topic helpers, and the
segment checks: these read the sequence store directly and compare with
gmpy2 (tests.reference), never with fibod's kernel.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient, NewTopic

from fibod import keys
from fibod.config import Settings
from fibod.errors import SegmentError
from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
from fibod.segments import SegmentLayout, validate_segment
from fibod.tasks import TaskStore
from tests.integration.stack import VAR, kafka_config
from tests.reference import gmpy2_run, segment_numbers_by_hand


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
    found = list(sequence_redis.scan_iter(match=keys.CLAIM_PREFIX + "*", count=1000))
    if not found:
        return {}
    owners = sequence_redis.mget(found)
    out = {}
    for key, owner in zip(found, owners, strict=True):
        parsed = keys.parse_claim_key(key)
        if parsed is not None and parsed[0] == segment_bytes and owner is not None:
            out[parsed[1]] = owner.decode()
    return out


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
    admin = AdminClient(kafka_config() | {"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    return {
        m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
        for m in description.members
    }


@contextlib.contextmanager
def own_topic(settings: Settings, name: str, partitions: int) -> Iterator[tuple[str, str]]:
    """Create a topic and name a group no other test uses; yield (topic, group).

    A worker started on them leaves the stack's own workers and queue
    alone. The topic is deleted afterwards.
    """
    suffix = uuid.uuid4().hex[:8]
    topic, group = f"fibod.test-{name}-{suffix}", f"fibod-test-{name}-{suffix}"
    admin = AdminClient(kafka_config())
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)
    try:
        yield topic, group
    finally:
        admin.delete_topics([topic])


FIGURES_FILE = VAR / "log" / "fault-figures.jsonl"


def record(test: str, **figures: object) -> None:
    """Append what a fault test measured to var/log/fault-figures.jsonl."""
    line = json.dumps({"test": test, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures})
    print(line)
    with FIGURES_FILE.open("a") as out:
        out.write(line + "\n")


def task_on_every_partition(settings: Settings, sn: int = 7) -> list[str]:
    """Create a task and queue it on each partition of the task topic; return ids.

    A partition nobody reads (e.g. left paused after a rebalance) leaves
    its task queued, which a check of these ids then shows.
    """
    tasks = TaskStore.from_settings(settings)
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
