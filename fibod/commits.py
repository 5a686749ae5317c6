"""Finished units' offsets, committed to Kafka in batches rather than one by one.

A synchronous commit per unit cost the broker more than the submission
that queued the unit (bench/submit_cpu.py, docs/BENCHMARKS.md) and kept
a worker waiting on it for most of a small task's time. A worker now
notes each finished unit here and commits what it noted once the oldest
note is `interval_s` old, when it has nothing to read, before partitions
are revoked and before it leaves the group. At-least-once stays: a
worker that dies first loses at most that interval's commits, and those
units are read again and found done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition


@dataclass(frozen=True)
class Noted:
    """The next offset to commit on one partition, and the tasks of its units."""

    partition: TopicPartition
    tasks: tuple[str, ...]

    def describe(self) -> str:
        """Where, and which tasks: 'fibod.tasks[3]@13 (task=abc task=def)'."""
        tp = self.partition
        tasks = " ".join(f"task={task}" for task in self.tasks)
        return f"{tp.topic}[{tp.partition}]@{tp.offset}" + (f" ({tasks})" if tasks else "")


class OffsetBatch:
    """Offsets of finished units not yet committed, per partition."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: dict[tuple[str, int], int] = {}
        #: The leader epoch of each partition's furthest unit (log truncation detection).
        self._epoch: dict[tuple[str, int], int | None] = {}
        self._tasks: dict[tuple[str, int], list[str]] = {}
        self._oldest: float | None = None

    def note(self, msg: Message, task_id: str | None) -> None:
        """Note that msg's unit finished: its partition commits past it."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError("message without topic, partition or offset")
        key = (topic, partition)
        if offset + 1 > self._next.get(key, 0):
            self._next[key] = offset + 1
            self._epoch[key] = msg.leader_epoch()
        if task_id:
            self._tasks.setdefault(key, []).append(task_id)
        if self._oldest is None:
            self._oldest = self._clock()

    def __bool__(self) -> bool:
        return bool(self._next)

    def poll_wait_s(self, longest_s: float) -> float:
        """How long a poll may wait: no longer than the interval while anything is noted."""
        return min(longest_s, self.interval_s) if self._next else longest_s

    def due(self) -> bool:
        """Whether the oldest note waited its interval (always, with an interval of 0)."""
        return self._oldest is not None and self._clock() - self._oldest >= self.interval_s

    def take(self, partitions: Iterable[TopicPartition] | None = None) -> list[Noted]:
        """Remove and return the notes (of these partitions only, if given)."""
        wanted = None if partitions is None else {(p.topic, p.partition) for p in partitions}
        taken = []
        for key in sorted(self._next):
            if wanted is None or key in wanted:
                offset, epoch = self._next.pop(key), self._epoch.pop(key, None)
                tasks = tuple(self._tasks.pop(key, ()))
                where = TopicPartition(key[0], key[1], offset)
                if epoch is not None:  # the constructor takes no None for it
                    where = TopicPartition(key[0], key[1], offset, leader_epoch=epoch)
                taken.append(Noted(where, tasks))
        if not self._next:
            self._oldest = None
        return taken
