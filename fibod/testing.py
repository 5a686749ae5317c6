"""In-memory stand-ins for the stores and the queue, for unit tests only.

They follow the real classes' contracts (SET NX segments, claim owners,
task states) closely enough for pure-logic tests; anything crossing a
process boundary is tested against the real servers instead.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Literal

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from fibod.errors import UnavailableError
from fibod.planner import Claim
from fibod.queue import QueueMessage
from fibod.segments import SegmentLayout
from fibod.taskmodel import (
    Task,
    TaskPage,
    TaskState,
    absent_task_error,
    cancel_outcome,
    may_finish,
    may_progress,
    new_task,
)
from fibod.worker import RebalanceCallback
from fibod.worklist import TAKE_COUNT

#: The id MAC key of the stand-in stores.
TEST_ID_KEY = b"fibod-test-id-key"


class MemorySequenceStore:
    """The sequence store's interface over dicts."""

    def __init__(self, layout: SegmentLayout) -> None:
        self.layout = layout
        self.segments: dict[int, bytes] = {}
        self.claims: dict[int, str] = {}
        self.counters: Counter[str] = Counter()
        self.gets: list[int] = []

    def get(self, j: int) -> bytes | None:
        self.gets.append(j)
        return self.segments.get(j)

    def put(self, j: int, segment: bytes) -> bool:
        if j in self.segments:
            return False
        self.segments[j] = segment
        return True

    def sizes(self, js: Sequence[int]) -> list[int]:
        return [len(self.segments.get(j, b"")) for j in js]

    def missing(self, js: Sequence[int]) -> list[int]:
        return [j for j in js if j not in self.segments]

    def claim(self, j: int, owner: str, lease_ms: int) -> Claim:
        if j in self.segments:
            return Claim.STORED
        if j in self.claims:
            return Claim.TAKEN
        self.claims[j] = owner
        return Claim.CLAIMED

    def store(self, j: int, segment: bytes) -> bool:
        return self.put(j, segment)

    def count(self, **deltas: int) -> None:
        self.counters.update(deltas)

    def discard(self, j: int, segment: bytes) -> bool:
        if self.segments.get(j) != segment:
            return False
        del self.segments[j]
        return True


class MemoryWorkList:
    """The work list's interface over dicts (fibod/worklist.py)."""

    def __init__(self) -> None:
        self.todo: dict[str, list[int]] = {}
        self.reports: dict[str, list[int]] = {}

    def publish(self, task_id: str, js: list[int]) -> None:
        self.todo[task_id] = list(js)
        self.reports[task_id] = []

    def take(self, task_id: str) -> list[int]:
        todo = self.todo.get(task_id, [])
        batch, self.todo[task_id] = todo[:TAKE_COUNT], todo[TAKE_COUNT:]
        return batch

    def report_and_take(self, task_id: str, js: list[int]) -> list[int]:
        if task_id in self.reports:
            self.reports[task_id] += js
        return self.take(task_id)

    def wait(self, task_id: str, timeout_s: float) -> list[int]:
        got, self.reports[task_id] = self.reports.get(task_id, []), []
        return got

    def finish(self, task_id: str) -> None:
        self.todo.pop(task_id, None)
        self.reports.pop(task_id, None)


class MemoryTaskStore:
    """The task store's interface over a dict; `clock` is settable.

    `work`, if set, is the work list a cancel empties (as CANCEL_TASK_LUA
    deletes the task's list in the same store).
    """

    def __init__(self, ttl_s: int = 3600, now: int = 1_700_000_000_000) -> None:
        self.tasks: dict[str, Task] = {}
        self.ttl_s = ttl_s
        self.clock = now
        self.key = TEST_ID_KEY
        self.down = False
        self.work: MemoryWorkList | None = None

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("task store unavailable: stub is down")

    def now(self) -> int:
        return self.clock

    def create(self, sn: int, start: int = 0) -> Task:
        self._check()
        task = new_task(sn, self.clock, self.key, start)
        self.tasks[task.id] = task
        return task

    def cancel(self, task_id: str) -> Task:
        task = self.lookup(task_id)
        cancel_outcome(task_id, task.state)
        if task.state in (TaskState.QUEUED, TaskState.RUNNING):
            task = replace(task, state=TaskState.CANCELLED, finished=self.clock)
            self.tasks[task_id] = task
            if self.work is not None:
                self.work.todo.pop(task_id, None)
        return task

    def list_tasks(self, state: TaskState | None, limit: int, cursor: str | None) -> TaskPage:
        """Page through the tasks newest first (no scan budget: a dict is small)."""
        self._check()
        ids = sorted((i for i in self.tasks if cursor is None or i < cursor), reverse=True)
        found = [self.tasks[i] for i in ids if state is None or self.tasks[i].state is state]
        more = len(found) > limit
        return TaskPage(found[:limit], found[limit - 1].id if more else None)

    def get(self, task_id: str) -> Task | None:
        self._check()
        return self.tasks.get(task_id)

    def lookup(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is not None:
            return task
        raise absent_task_error(task_id, self.ttl_s, self.clock, self.key)

    def delete(self, task_id: str) -> None:
        self._check()
        self.tasks.pop(task_id, None)

    def mark_running(self, task_id: str, owner: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.RUNNING):
            return False
        started = task.started if task.started is not None else self.clock
        self.tasks[task_id] = replace(task, state=TaskState.RUNNING, started=started, owner=owner)
        return True

    def set_progress(self, task_id: str, done: int, owner: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None or not may_progress(task, owner, done):
            return False
        self.tasks[task_id] = replace(task, done=done)
        return True

    def mark_failed(self, task_id: str, error: str, owner: str = "") -> bool:
        task = self.tasks.get(task_id)
        if task is None or not may_finish(task, owner):
            return False
        self.tasks[task_id] = replace(
            task, state=TaskState.FAILED, error=error, finished=self.clock
        )
        return True

    def mark_ready(self, task_id: str, text_bytes: int, owner: str = "") -> bool:
        task = self.tasks.get(task_id)
        if task is None or not may_finish(task, owner):
            return False
        self.tasks[task_id] = replace(
            task, state=TaskState.READY, done=text_bytes, text_bytes=text_bytes, finished=self.clock
        )
        return True


class RecordingPublisher:
    """A publisher that records messages, or fails like a down broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[QueueMessage, int | None]] = []
        self.down = False
        self.closed = False

    def publish(self, message: QueueMessage, partition: int | None = None) -> None:
        if self.down:
            raise UnavailableError("task queue refused the task: stub broker is down")
        self.messages.append((message, partition))

    def publish_nowait(self, message: QueueMessage, partition: int | None = None) -> None:
        self.publish(message, partition)

    def close(self) -> None:
        self.closed = True


class ScriptedConsumer:
    """A Kafka consumer that hands out a script of messages.

    It keeps what a worker's loop relies on: a paused partition yields
    nothing, and rebalance callbacks run inside poll(), as librdkafka
    runs them. `during_unit` is called on each poll made while partitions
    are paused (a worker's unit is running); `when_done` on the first
    poll that finds the script empty and nothing paused.
    """

    def __init__(self, topic: str, partitions: Iterable[int] = (0, 1)) -> None:
        self.topic = topic
        self.partitions = list(partitions)
        self.script: deque[Message] = deque()
        self.paused: set[int] = set()
        self.pause_calls = 0
        self.resumed: list[int] = []
        #: Per partition committed, the offset of the last message covered.
        self.committed: list[int] = []
        self.commit_calls = 0
        #: commit() raises KafkaException this many more times (the group moved on).
        self.failing_commits = 0
        self.closed = False
        self.during_unit: Callable[[], None] | None = None
        self.when_done: Callable[[], None] | None = None
        #: pause() raises KafkaException this many more times (a broker hiccup).
        self.failing_pauses = 0
        #: seek() raises KafkaException this many more times.
        self.failing_seeks = 0
        self._on_revoke: RebalanceCallback | None = None
        self._on_lost: RebalanceCallback | None = None
        self._handed: list[Message] = []

    def feed(self, value: bytes, partition: int = 0, offset: int = 7) -> Message:
        """Queue a message for a later poll; return it."""
        message = Message(topic=self.topic, partition=partition, offset=offset, value=value)
        self.script.append(message)
        return message

    def revoke(self, partitions: Iterable[int]) -> None:
        """Take partitions away as a rebalance does: callback, then unassign."""
        gone = [TopicPartition(self.topic, p) for p in partitions]
        if self._on_revoke is not None:
            self._on_revoke(self, gone)
        self.partitions = [p for p in self.partitions if p not in {tp.partition for tp in gone}]

    def lose(self, partitions: Iterable[int]) -> None:
        """Take partitions away as a missed session does: on_lost, then unassign."""
        gone = [TopicPartition(self.topic, p) for p in partitions]
        if self._on_lost is not None:
            self._on_lost(self, gone)
        self.partitions = [p for p in self.partitions if p not in {tp.partition for tp in gone}]

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
    ) -> None:
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        if on_assign is not None:  # the group hands out the scripted partitions at once
            on_assign(self, [TopicPartition(self.topic, p) for p in self.partitions])

    def poll(self, timeout: float = -1) -> Message | None:
        if self.paused:
            if self.during_unit is not None:
                self.during_unit()
            return None
        if self.script:
            message = self.script.popleft()
            self._handed.append(message)
            return message
        if self.when_done is not None:
            self.when_done()
        time.sleep(min(max(timeout, 0.0), 0.01))  # nothing to hand out: wait a little
        return None

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self.topic, p) for p in self.partitions]

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pause_calls += 1
        if self.failing_pauses:
            self.failing_pauses -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker hiccup"))
        self.paused.update(tp.partition for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update(tp.partition for tp in partitions)
        self.resumed += [tp.partition for tp in partitions]

    def seek(self, partition: TopicPartition) -> None:
        """Hand out again the message at that offset (a rewind)."""
        if self.failing_seeks:
            self.failing_seeks -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "erroneous state"))
        for message in self._handed:
            if (message.partition(), message.offset()) == (partition.partition, partition.offset):
                self.script.appendleft(message)
                return

    def commit(
        self, *, offsets: list[TopicPartition], asynchronous: Literal[False]
    ) -> list[TopicPartition] | None:
        """Record, per partition committed, the offset of the last message it covers."""
        self.commit_calls += 1
        if self.failing_commits:
            self.failing_commits -= 1
            raise KafkaException(KafkaError(KafkaError.UNKNOWN_MEMBER_ID, "group moved on"))
        self.committed += [tp.offset - 1 for tp in offsets]
        return offsets

    def close(self) -> None:
        self.closed = True
