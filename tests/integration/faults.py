"""Fault injection on the running stack, and the checks that follow a fault.

Ghost claims, catching a worker while it holds a claim, process figures,
Kafka group and topic helpers, and the segment checks: these read the
sequence store directly and compare with gmpy2 (tests.reference), never
with fibod's kernel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
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
from tests.integration.stack import VAR, inject_signal, kafka_config
from tests.reference import gmpy2_run, segment_numbers_by_hand


def worker_owner(pid: int) -> str:
    """Return the owner id a worker with this pid writes into its claims."""
    return f"{socket.gethostname()}:{pid}"


def rss_kib(pid: int) -> int:
    """Return a process's resident set size in KiB (VmRSS)."""
    return _status_field(pid, "VmRSS")


def reset_peak_rss(pid: int) -> None:
    """Make a process's peak RSS (VmHWM) start again from its RSS now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_kib(pid: int) -> int:
    """Return a process's peak resident set size in KiB (VmHWM)."""
    return _status_field(pid, "VmHWM")


def threads(pid: int) -> int:
    """Return a process's thread count."""
    return _status_field(pid, "Threads")


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} for pid {pid}")


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


class ClaimWatcher(threading.Thread):
    """Follow every compute claim, and the segment it guards, as it happens.

    Keyspace notifications (switched on for the watcher's lifetime) report
    each claim key set or expired and each segment stored, in the order
    Redis ran the commands. A claim outlives its segment's storing (it
    expires with its lease), so a segment is being computed from its
    claim's set until the segment's set: the count of those at once is
    exact. The owner a claim names is read right after its notification.
    """

    def __init__(self, sequence_redis: redis.Redis) -> None:
        super().__init__(name="claim-watcher", daemon=True)
        self._redis = sequence_redis
        self._events = sequence_redis.config_get("notify-keyspace-events")["notify-keyspace-events"]
        sequence_redis.config_set("notify-keyspace-events", "K$gx")
        self._pubsub = sequence_redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe(
            f"__keyspace@0__:{keys.CLAIM_PREFIX}*", f"__keyspace@0__:{keys.SEGMENT_PREFIX}*"
        )
        self._done = threading.Event()
        self.claims = 0
        #: Segments claimed and not stored yet: being computed.
        self.computing: set[tuple[int, int]] = set()
        self.most_held = 0
        self.owners: set[str] = set()

    def run(self) -> None:
        """Count claims set, segments computed at once; read each new claim's owner."""
        prefix = len("__keyspace@0__:")
        while not self._done.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message is None:
                continue
            name, event = message["channel"][prefix:], message["data"].decode()
            claim, segment = keys.parse_claim_key(name), keys.parse_segment_key(name)
            if claim is not None and event == "set":
                self.claims += 1
                self.computing.add(claim)
                self.most_held = max(self.most_held, len(self.computing))
                owner = self._redis.get(name)
                if owner is not None:
                    self.owners.add(owner.decode())
            elif claim is not None and event in ("del", "expired"):
                self.computing.discard(claim)  # its worker died before storing it
            elif segment is not None and event == "set":
                self.computing.discard(segment)

    def stop(self) -> None:
        """Stop watching; switch the notifications back as they were."""
        self._done.set()
        self.join(timeout=10)
        self._pubsub.close()
        self._redis.config_set("notify-keyspace-events", self._events)


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


@dataclass(frozen=True)
class HeldClaim:
    """A claim a stopped worker was caught holding, its segment not stored."""

    j: int
    #: time.monotonic() by which its lease has run out (never later than that).
    expires_by: float
    #: Stops that came too late (the segment stored) before this one.
    misses: int = 0


#: Pause after stopping a process, so what it sent before reaches Redis first.
SETTLE_S = 0.05


def held_claim(
    sequence_redis: redis.Redis, layout: SegmentLayout, j: int, owner: str
) -> HeldClaim | None:
    """Return owner's claim on segment j if it holds one and j is not stored."""
    claim_key = keys.claim_key(layout.segment_bytes, j)
    asked_at = time.monotonic()
    with sequence_redis.pipeline(transaction=False) as pipe:
        pipe.get(claim_key)
        pipe.pttl(claim_key)
        pipe.exists(keys.segment_key(layout.segment_bytes, j))
        holder, pttl_ms, stored = pipe.execute()
    if holder is None or holder.decode() != owner or stored or pttl_ms <= 0:
        return None
    return HeldClaim(j, asked_at + pttl_ms / 1000)


def stop_holding_a_claim(
    sequence_redis: redis.Redis,
    layout: SegmentLayout,
    pid: int,
    sn: int,
    min_j: int,
    timeout_s: float = 30,
) -> HeldClaim:
    """Stop a worker (SIGSTOP) while it holds a claim on a segment of F(0..sn-1).

    Follows the claims as Redis sets them (keyspace notifications): when the
    worker takes one on segment min_j or later, it is stopped at once, while
    it encodes that segment (a millisecond or so). Then it checks that a
    claim is still its own and its segment not stored: a stopped process can
    change neither, so the check cannot race. A stop that came after the
    segment was stored is undone (SIGCONT) and tried again on the worker's
    next claim. The worker is left stopped.
    """
    owner = worker_owner(pid).encode()
    claim_keys = [keys.claim_key(layout.segment_bytes, j) for j in layout.covering(sn)]
    wanted = set(claim_keys[min_j:])
    events = sequence_redis.config_get("notify-keyspace-events")["notify-keyspace-events"]
    sequence_redis.config_set("notify-keyspace-events", "K$")
    pubsub = sequence_redis.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(f"__keyspace@0__:{keys.CLAIM_PREFIX}*")
    prefix = len("__keyspace@0__:")
    deadline = time.monotonic() + timeout_s
    misses = 0
    try:
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
            if message is None or message["data"] != b"set":
                continue
            name = message["channel"][prefix:].decode()
            if name not in wanted or sequence_redis.get(name) != owner:
                continue
            inject_signal(pid, signal.SIGSTOP)
            time.sleep(SETTLE_S)
            # its claims on stored segments linger until their lease ends: the
            # newest is the one it may still be computing
            holders = sequence_redis.mget(claim_keys[min_j:])
            mine = [min_j + i for i, h in enumerate(holders) if h == owner]
            for j in reversed(mine):
                caught = held_claim(sequence_redis, layout, j, owner.decode())
                if caught is not None:
                    return dataclasses.replace(caught, misses=misses)
            misses += 1
            os.kill(pid, signal.SIGCONT)
            while pubsub.get_message(timeout=0) is not None:
                pass  # claims set while it was stopped are old news
    finally:
        pubsub.close()
        sequence_redis.config_set("notify-keyspace-events", events)
    raise AssertionError(f"worker {pid} not caught holding a claim ({misses} misses)")


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


def task_on_every_partition(settings: Settings, sns: Sequence[int] = ()) -> list[str]:
    """Create a task and queue it on each partition of the task topic; return ids.

    Task i asks for sns[i] numbers (7 where sns is shorter). A partition
    nobody reads (e.g. left paused after a rebalance) leaves its task
    queued, which a check of these ids then shows.
    """
    tasks = TaskStore.from_settings(settings)
    publisher = TaskPublisher.from_settings(settings, "fibod-test-partitions")
    ids = []
    try:
        for partition in range(settings.task_partitions):
            sn = sns[partition] if partition < len(sns) else 7
            task = tasks.create(sn)
            publisher.publish(QueueMessage(KIND_TASK, task.id, sn), partition)
            ids.append(task.id)
    finally:
        publisher.close()
    return ids
