"""In-memory stand-ins for the stores and the queue, for unit tests only.

They follow the real classes' contracts (SET NX segments, claim owners,
task states) closely enough for pure-logic tests; anything crossing a
process boundary is tested against the real servers instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from fibod.errors import UnavailableError
from fibod.queue import QueueMessage
from fibod.segments import HEADER_BYTES, SegmentLayout
from fibod.sequences import text_bytes_from_segments
from fibod.tasks import Task, TaskState, absent_task_error, new_task


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

    def claim(self, j: int, owner: str, lease_ms: int) -> bool:
        if j in self.claims:
            return False
        self.claims[j] = owner
        return True

    def release(self, j: int, owner: str) -> bool:
        if self.claims.get(j) != owner:
            return False
        del self.claims[j]
        return True

    def claimed(self, js: Sequence[int]) -> list[bool]:
        return [j in self.claims for j in js]

    def count(self, **deltas: int) -> None:
        self.counters.update(deltas)

    def text_bytes(self, js: Sequence[int], sn: int) -> int | None:
        if not js:
            return 0
        if any(j not in self.segments for j in js):
            return None
        heads = [self.segments[j][:HEADER_BYTES] for j in js[:-1]]
        return text_bytes_from_segments(self.layout, js, heads, self.segments[js[-1]], sn)


class MemoryTaskStore:
    """The task store's interface over a dict; `now` is settable."""

    def __init__(self, ttl_s: int = 3600, now: int = 1_700_000_000_000) -> None:
        self.tasks: dict[str, Task] = {}
        self.ttl_s = ttl_s
        self.now = now
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise UnavailableError("task store unavailable: stub is down")

    def create(self, sn: int) -> Task:
        self._check()
        task = new_task(sn, self.now)
        self.tasks[task.id] = task
        return task

    def get(self, task_id: str) -> Task | None:
        self._check()
        return self.tasks.get(task_id)

    def lookup(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task is not None:
            return task
        raise absent_task_error(task_id, self.ttl_s, self.now)

    def delete(self, task_id: str) -> None:
        self._check()
        self.tasks.pop(task_id, None)

    def requeue(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None or task.state is not TaskState.READY:
            return False
        self.tasks[task_id] = replace(task, state=TaskState.QUEUED, done=0, text_bytes=None)
        return True

    def mark_running(self, task_id: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None or task.state not in (TaskState.QUEUED, TaskState.RUNNING):
            return False
        self.tasks[task_id] = replace(task, state=TaskState.RUNNING, started=self.now)
        return True

    def set_progress(self, task_id: str, done: int) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        self.tasks[task_id] = replace(task, done=done)
        return True

    def mark_failed(self, task_id: str, error: str) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        self.tasks[task_id] = replace(task, state=TaskState.FAILED, error=error)
        return True

    def mark_ready(self, task_id: str, sn: int, text_bytes: int) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        self.tasks[task_id] = replace(
            task, state=TaskState.READY, done=sn, text_bytes=text_bytes, finished=self.now
        )
        return True


class RecordingPublisher:
    """A publisher that records messages, or fails like a down broker."""

    def __init__(self) -> None:
        self.messages: list[tuple[QueueMessage, int | None]] = []
        self.down = False

    def publish(self, message: QueueMessage, partition: int | None = None) -> None:
        if self.down:
            raise UnavailableError("task queue refused the task: stub broker is down")
        self.messages.append((message, partition))

    def publish_nowait(self, message: QueueMessage, partition: int | None = None) -> None:
        self.publish(message, partition)
