"""The worker's unit logic against a scripted consumer and stub stores."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fibod import keys
from fibod.config import Settings
from fibod.planner import task_segments
from fibod.queue import KIND_HELP, KIND_TASK, QueueMessage
from fibod.segments import SegmentLayout, encode_segment
from fibod.tasks import TaskState
from fibod.testing import MemorySequenceStore, MemoryTaskStore, RecordingPublisher
from fibod.worker import Worker

LAYOUT = SegmentLayout(4096)
SETTINGS = Settings(segment_bytes=4096, task_partitions=4)


@dataclass
class FakePartition:
    topic: str
    partition: int


@dataclass
class StubMessage:
    payload: bytes
    partition_no: int = 0
    offset_no: int = 7

    def topic(self) -> str:
        return SETTINGS.task_topic

    def partition(self) -> int:
        return self.partition_no

    def offset(self) -> int:
        return self.offset_no

    def value(self) -> bytes:
        return self.payload

    def error(self) -> None:
        return None


@dataclass
class StubConsumer:
    """Records what the worker does to its consumer."""

    partitions: list[int] = field(default_factory=lambda: [0, 1])
    committed: list[int] = field(default_factory=list)
    paused: int = 0
    resumed: int = 0
    resumed_parts: list[int] = field(default_factory=list)
    polls: int = 0
    on_poll: object = None

    def assignment(self) -> list[FakePartition]:
        return [FakePartition(SETTINGS.task_topic, p) for p in self.partitions]

    def pause(self, _parts: list[FakePartition]) -> None:
        self.paused += 1

    def resume(self, parts: list[FakePartition]) -> None:
        self.resumed += 1
        self.resumed_parts += [p.partition for p in parts]

    def poll(self, _timeout: float) -> None:
        self.polls += 1
        if callable(self.on_poll):
            self.on_poll()

    def commit(self, message: StubMessage, asynchronous: bool) -> None:
        assert asynchronous is False
        self.committed.append(message.offset())

    def seek(self, _tp: object) -> None:
        pass


def make_worker(consumer: StubConsumer) -> tuple[Worker, MemoryTaskStore, MemorySequenceStore]:
    tasks = MemoryTaskStore()
    sequences = MemorySequenceStore(LAYOUT)
    worker = Worker(SETTINGS, consumer, RecordingPublisher(), tasks, sequences, "me")  # type: ignore[arg-type]
    return worker, tasks, sequences


def task_message(task_id: str, sn: int, kind: str = KIND_TASK) -> StubMessage:
    return StubMessage(QueueMessage(kind, task_id, sn).encode())


def test_task_is_computed_marked_then_committed() -> None:
    # given a queued task of many segments, one already stored
    consumer = StubConsumer()
    worker, tasks, sequences = make_worker(consumer)
    task = tasks.create(3000)
    sequences.put(0, encode_segment(*LAYOUT.bounds(0)))
    js = task_segments(LAYOUT, 3000)
    # when the worker handles its message
    worker.handle(task_message(task.id, 3000))
    # then every segment is stored, the task ready with its length, the offset committed
    done = tasks.tasks[task.id]
    assert done.state is TaskState.READY
    assert done.text_bytes == sequences.text_bytes(js, 3000)
    assert consumer.committed == [7]
    assert sequences.counters[keys.STAT_SEGMENTS_REUSED] == 1
    assert sequences.counters[keys.STAT_SEGMENTS_COMPUTED] == len(js) - 1
    assert sequences.counters[keys.STAT_TASKS_COMPLETED] == 1
    # and help went to the partitions this worker does not own
    helps = worker.publisher.messages  # type: ignore[attr-defined]
    assert [(m.kind, p) for m, p in helps] == [(KIND_HELP, 2), (KIND_HELP, 3)]


def test_stop_during_a_unit_abandons_without_commit() -> None:
    # given a worker asked to stop while it waits for a segment claimed by another
    consumer = StubConsumer()
    worker, tasks, sequences = make_worker(consumer)
    task = tasks.create(3000)
    for j in task_segments(LAYOUT, 3000):
        sequences.claim(j, "other", 10_000)
    consumer.on_poll = lambda: setattr(worker, "stopping", True)
    # when it handles the task
    worker.handle(task_message(task.id, 3000))
    # then nothing is committed, partitions were paused while waiting, then resumed
    assert consumer.committed == []
    assert consumer.paused >= 1
    assert consumer.resumed == 1
    assert tasks.tasks[task.id].state is TaskState.RUNNING


def test_revoked_partition_abandons_without_commit() -> None:
    consumer = StubConsumer()
    worker, tasks, sequences = make_worker(consumer)
    task = tasks.create(3000)
    for j in task_segments(LAYOUT, 3000):
        sequences.claim(j, "other", 10_000)

    def revoke_partition_0() -> None:
        worker._on_revoke(consumer, [FakePartition(SETTINGS.task_topic, 0)])  # type: ignore[arg-type]
        consumer.partitions = [1]  # librdkafka unassigns it after the callback

    consumer.on_poll = revoke_partition_0
    worker.handle(task_message(task.id, 3000))
    assert consumer.committed == []
    # and the revoked partition leaves unpaused: librdkafka would keep it
    # paused if it came back, and nothing would read it again
    assert 0 in consumer.resumed_parts


@pytest.mark.parametrize("payload", [b"garbage", b'{"v":1,"kind":"task","id":"x","sn":-4}'])
def test_malformed_message_is_committed_and_skipped(payload: bytes) -> None:
    consumer = StubConsumer()
    worker, _, _ = make_worker(consumer)
    worker.handle(StubMessage(payload))
    assert consumer.committed == [7]


def test_help_computes_unclaimed_and_does_not_wait() -> None:
    consumer = StubConsumer()
    worker, tasks, sequences = make_worker(consumer)
    task = tasks.create(3000)
    js = task_segments(LAYOUT, 3000)
    sequences.claim(js[0], "owner", 10_000)
    worker.handle(task_message(task.id, 3000, KIND_HELP))
    assert sequences.missing(js) == [js[0]]
    assert consumer.committed == [7]
    assert tasks.tasks[task.id].state is TaskState.QUEUED  # the owner marks it, not a helper


def test_duplicate_delivery_of_ready_task_is_committed() -> None:
    consumer = StubConsumer()
    worker, tasks, sequences = make_worker(consumer)
    task = tasks.create(10)
    worker.handle(task_message(task.id, 10))
    worker.handle(task_message(task.id, 10))
    assert consumer.committed == [7, 7]
    assert sequences.counters[keys.STAT_TASKS_COMPLETED] == 1
