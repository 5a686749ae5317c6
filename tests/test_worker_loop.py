"""The worker's loop and units against a scripted consumer and stub stores."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import pytest

from fibod import keys
from fibod import worker as worker_module
from fibod.config import Settings
from fibod.planner import task_segments
from fibod.queue import KIND_HELP, KIND_TASK, QueueMessage
from fibod.segments import SegmentLayout, encode_segment
from fibod.taskmodel import TaskState
from fibod.testing import (
    MemorySequenceStore,
    MemoryTaskStore,
    MemoryWorkList,
    RecordingPublisher,
    ScriptedConsumer,
)
from fibod.worker import Worker
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)
SETTINGS = Settings(segment_bytes=4096, task_partitions=4)
#: Spans many 4 KiB segments.
SN = 3000


@dataclass
class Parts:
    """A worker on stand-ins, run until its script of messages is done."""

    consumer: ScriptedConsumer = field(
        default_factory=lambda: ScriptedConsumer(SETTINGS.task_topic, [0, 1])
    )
    tasks: MemoryTaskStore = field(default_factory=MemoryTaskStore)
    sequences: MemorySequenceStore = field(default_factory=lambda: MemorySequenceStore(LAYOUT))
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    work: MemoryWorkList = field(default_factory=MemoryWorkList)
    settings: Settings = SETTINGS

    def __post_init__(self) -> None:
        self.worker = Worker(
            self.settings,
            self.consumer,
            self.publisher,
            self.tasks,
            self.sequences,
            self.work,
            "me",
        )
        self.consumer.when_done = self.worker.request_stop
        self.tasks.work = self.work  # a cancel empties the task's work list

    def queue(self, task_id: str, sn: int, kind: str = KIND_TASK) -> None:
        """Put a message on the scripted topic."""
        self.consumer.feed(QueueMessage(kind, task_id, sn).encode())

    def claim_all_for_another_worker(self, sn: int) -> None:
        """Make every segment of sn wait for a claim held elsewhere."""
        for j in task_segments(LAYOUT, sn):
            self.sequences.claim(j, "other", 10_000)


@pytest.fixture
def parts() -> Parts:
    return Parts()


def test_task_is_computed_marked_ready_then_committed(parts: Parts) -> None:
    # given a queued task of many segments, one of them already stored
    task = parts.tasks.create(SN)
    parts.sequences.put(0, encode_segment(*LAYOUT.bounds(0)))
    js = task_segments(LAYOUT, SN)
    parts.queue(task.id, SN)
    # when the worker runs through its messages
    parts.worker.run()
    # then every segment is stored, the task ready with its text length, the offset committed
    done = parts.tasks.tasks[task.id]
    assert done.state is TaskState.READY
    assert done.text_bytes == len(reference_text(0, SN))
    assert parts.sequences.missing(js) == []
    assert parts.consumer.committed == [7]
    counters = parts.sequences.counters
    assert counters[keys.STAT_SEGMENTS_REUSED] == 1
    assert counters[keys.STAT_SEGMENTS_COMPUTED] == len(js) - 1
    assert counters[keys.STAT_TASKS_COMPLETED] == 1
    # and help went to the partitions this worker does not own
    assert [(m.kind, p) for m, p in parts.publisher.messages] == [(KIND_HELP, 2), (KIND_HELP, 3)]
    # and the worker left the group and flushed its publisher on the way out
    assert parts.consumer.closed and parts.publisher.closed


def test_stop_during_a_unit_abandons_it_without_commit(parts: Parts) -> None:
    # given a task whose segments are all claimed by another worker
    task = parts.tasks.create(SN)
    parts.claim_all_for_another_worker(SN)
    parts.queue(task.id, SN)
    # when a stop is requested while the unit waits, partitions paused
    parts.consumer.during_unit = parts.worker.request_stop
    parts.worker.run()
    # then nothing is committed and the task stays running for a redelivery
    assert parts.consumer.committed == []
    assert parts.tasks.tasks[task.id].state is TaskState.RUNNING
    # and the partitions paused for the unit are resumed, the consumer closed
    assert parts.consumer.pause_calls >= 1
    assert parts.consumer.paused == set()
    assert parts.consumer.closed


def test_partition_revoked_during_a_unit_abandons_it_and_leaves_it_unpaused(
    parts: Parts,
) -> None:
    # given a unit waiting on partition 0 for segments claimed elsewhere
    task = parts.tasks.create(SN)
    parts.claim_all_for_another_worker(SN)
    parts.queue(task.id, SN)
    # when a rebalance takes partition 0 away meanwhile
    parts.consumer.during_unit = lambda: parts.consumer.revoke([0])
    parts.worker.run()
    # then the unit is not committed (its new owner redoes it)
    assert parts.consumer.committed == []
    # and partition 0 was resumed as it left: librdkafka keeps a pause across
    # assignments, so a paused partition that came back would never be read
    assert 0 in parts.consumer.resumed


@pytest.mark.parametrize("payload", [b"garbage", b'{"v":1,"kind":"task","id":"x","sn":-4}'])
def test_malformed_message_is_committed_and_skipped(parts: Parts, payload: bytes) -> None:
    parts.consumer.feed(payload)
    parts.worker.run()
    assert parts.consumer.committed == [7]


def test_help_computes_handed_out_segments_reports_them_and_does_not_wait(
    parts: Parts,
) -> None:
    # given a task whose owner published its work list and holds the first segment
    task = parts.tasks.create(SN)
    js = task_segments(LAYOUT, SN)
    parts.work.publish(task.id, js)
    parts.sequences.claim(js[0], "owner", 10_000)
    # when this worker gets a help message for it
    parts.queue(task.id, SN, KIND_HELP)
    parts.worker.run()
    # then it computed every other segment, reported each to the owner,
    # committed, and left the task to its owner
    assert parts.sequences.missing(js) == [js[0]]
    assert parts.work.reports[task.id] == js[1:]
    assert parts.consumer.committed == [7]
    assert parts.tasks.tasks[task.id].state is TaskState.QUEUED


def test_duplicate_delivery_of_a_ready_task_is_committed_once_more(parts: Parts) -> None:
    task = parts.tasks.create(10)
    parts.queue(task.id, 10)
    parts.queue(task.id, 10)
    parts.worker.run()
    assert parts.consumer.committed == [7]  # both units noted; one commit covers them
    assert parts.sequences.counters[keys.STAT_TASKS_COMPLETED] == 1


def test_a_short_unit_leaves_its_partitions_unpaused(parts: Parts) -> None:
    # given a small task, done well within the keep-alive interval
    task = parts.tasks.create(10)
    parts.queue(task.id, 10)
    # when the worker runs it
    parts.worker.run()
    # then it never paused: librdkafka fetches a resumed partition only at its
    # next wake-up, which cost the next task up to a second (docs/BENCHMARKS.md)
    assert parts.tasks.tasks[task.id].state is TaskState.READY
    assert parts.consumer.pause_calls == 0


def test_a_broker_hiccup_during_a_unit_retries_it_and_never_fails_the_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a task whose unit keeps alive at once (as a long one does), and a
    # broker that refuses the worker's first pause() call
    monkeypatch.setattr(worker_module, "KEEPALIVE_EVERY_S", 0.0)
    parts = Parts()
    sleeps: list[float] = []
    parts.worker._sleep = sleeps.append
    parts.consumer.failing_pauses = 1
    task = parts.tasks.create(SN)
    parts.queue(task.id, SN)
    # when the worker runs
    parts.worker.run()
    # then the unit was read again after backing off, and the task is ready, not failed
    assert parts.tasks.tasks[task.id].state is TaskState.READY
    assert parts.consumer.committed == [7]
    assert sum(sleeps) == pytest.approx(1.0)  # backed off once, 1 s


def test_a_full_task_store_backs_off_longer_each_time_and_says_so(caplog) -> None:
    # given a task store that refuses writes for the first three attempts
    parts = Parts()
    task = parts.tasks.create(SN)
    parts.queue(task.id, SN)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if sum(sleeps) >= 1.0 + 2.0 + 4.0 - 1e-9:
            parts.tasks.down = False  # the operator freed memory

    parts.worker._sleep = sleep
    parts.tasks.down = True
    # when the worker runs
    with caplog.at_level("WARNING", logger="fibod.worker"):
        parts.worker.run()
    # then it waited 1, 2 and 4 s, said why each time, and finished the task
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert [line.split(" (")[0] for line in retries] == [
        "retrying in 1 s",
        "retrying in 2 s",
        "retrying in 4 s",
    ]
    assert all("stub is down" in line for line in retries)
    assert parts.tasks.tasks[task.id].state is TaskState.READY


def test_a_task_from_a_computes_only_the_segments_of_its_run(parts: Parts) -> None:
    # given a queued task of F(5000)..F(5599)
    task = parts.tasks.create(600, start=5000)
    parts.consumer.feed(QueueMessage(KIND_TASK, task.id, 600, start=5000).encode())
    # when the worker runs
    parts.worker.run()
    # then exactly the segments covering the run are stored, and the length is the run's
    js = task_segments(LAYOUT, 600, 5000)
    assert js[0] > 0
    assert sorted(parts.sequences.segments) == js
    done = parts.tasks.tasks[task.id]
    assert (done.state, done.text_bytes) == (TaskState.READY, len(reference_text(5000, 600)))


class CancellingStore(MemorySequenceStore):
    """A sequence store whose task is cancelled once `after` segments are stored."""

    def __init__(self, tasks: MemoryTaskStore, after: int) -> None:
        super().__init__(LAYOUT)
        self.tasks_store, self.after, self.task_id = tasks, after, ""

    def put(self, j: int, segment: bytes) -> bool:
        stored = super().put(j, segment)
        if len(self.segments) == self.after:
            self.tasks_store.cancel(self.task_id)
        return stored


@pytest.mark.parametrize("kind", [KIND_TASK, KIND_HELP])
def test_a_cancelled_task_stops_at_the_next_segment_and_is_committed(kind: str) -> None:
    # given a task of many segments, cancelled once 2 segments are stored
    tasks = MemoryTaskStore()
    parts = Parts(tasks=tasks, sequences=CancellingStore(tasks, after=2))
    task = parts.tasks.create(SN)
    parts.sequences.task_id = task.id
    if kind == KIND_HELP:  # its owner runs it and published its work list
        parts.tasks.mark_running(task.id, "the owner")
        parts.work.publish(task.id, task_segments(LAYOUT, SN))
    parts.queue(task.id, SN, kind)
    # when a worker runs its unit
    parts.worker.run()
    # then it stopped after those 2, the task stays cancelled, and the unit is committed
    assert len(parts.sequences.segments) == 2
    assert len(task_segments(LAYOUT, SN)) > 5
    assert parts.tasks.tasks[task.id].state is TaskState.CANCELLED
    assert parts.consumer.committed == [7]


def test_a_task_cancelled_while_queued_is_not_computed(parts: Parts) -> None:
    task = parts.tasks.create(SN)
    parts.tasks.cancel(task.id)
    parts.queue(task.id, SN)
    parts.worker.run()
    assert parts.sequences.segments == {}
    assert parts.consumer.committed == [7]


def _small_tasks(parts: Parts, where: list[tuple[int, int]]) -> list[str]:
    """Queue an sn=10 task at each (partition, offset); return their ids."""
    ids = []
    for partition, offset in where:
        task = parts.tasks.create(10)
        parts.consumer.feed(QueueMessage(KIND_TASK, task.id, 10).encode(), partition, offset)
        ids.append(task.id)
    return ids


def test_finished_units_are_committed_together_once_idle() -> None:
    # given a worker whose notes are not due for a minute
    parts = Parts(settings=replace(SETTINGS, worker_commit_interval_ms=60_000))
    ids = _small_tasks(parts, [(0, 1), (0, 2), (1, 5), (0, 3), (1, 6)])
    # when it runs the five units and finds nothing more to read
    parts.worker.run()
    # then every task is ready, and one commit covered each partition's last unit
    assert all(parts.tasks.tasks[i].state is TaskState.READY for i in ids)
    assert parts.consumer.commit_calls == 1
    assert parts.consumer.committed == [3, 6]


def test_an_interval_of_zero_commits_after_every_unit() -> None:
    parts = Parts(settings=replace(SETTINGS, worker_commit_interval_ms=0))
    _small_tasks(parts, [(0, 1), (0, 2), (1, 5)])
    parts.worker.run()
    assert parts.consumer.commit_calls == 3
    assert parts.consumer.committed == [1, 2, 5]


def test_revoked_partitions_commit_first_and_lost_ones_are_redone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given finished units on two partitions, their commits not yet due
    parts = Parts(settings=replace(SETTINGS, worker_commit_interval_ms=60_000))
    ids = _small_tasks(parts, [(0, 1), (1, 4)])

    def rebalance() -> None:
        parts.consumer.revoke([0])  # handed over in order: still ours during the callback
        parts.consumer.lose([1])  # the session was lost: no longer ours at all
        parts.worker.request_stop()

    parts.consumer.when_done = rebalance
    # when the group takes partition 0 back and partition 1 is lost
    with caplog.at_level(logging.WARNING, logger="fibod.worker"):
        parts.worker.run()
    # then partition 0's unit was committed, partition 1's was not (its next
    # owner reads it again and finds the task ready), and the log says which
    assert parts.consumer.committed == [1]
    assert any(
        "partitions lost before commit" in r.getMessage() and f"task={ids[1]}" in r.getMessage()
        for r in caplog.records
    )


def test_a_refused_commit_is_logged_with_its_tasks_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a worker whose first commit the group refuses
    parts = Parts(settings=replace(SETTINGS, worker_commit_interval_ms=0))
    parts.consumer.failing_commits = 1
    ids = _small_tasks(parts, [(0, 1), (0, 2)])
    # when it runs both units
    with caplog.at_level(logging.WARNING, logger="fibod.worker"):
        parts.worker.run()
    # then the refusal names the unit's task, and the next unit is committed
    assert any(
        "commit of" in r.getMessage() and f"task={ids[0]}" in r.getMessage() for r in caplog.records
    )
    assert parts.consumer.committed == [2]
    assert all(parts.tasks.tasks[i].state is TaskState.READY for i in ids)


def test_a_message_that_cannot_be_read_again_stops_the_worker_before_any_later_commit(
    caplog,
) -> None:
    # given two tasks on one partition, a task store down for the first attempt,
    # and a consumer that cannot seek back to the first message
    parts = Parts()
    first, second = parts.tasks.create(SN), parts.tasks.create(SN)
    parts.consumer.feed(QueueMessage(KIND_TASK, first.id, SN).encode(), offset=7)
    parts.consumer.feed(QueueMessage(KIND_TASK, second.id, SN).encode(), offset=8)
    parts.tasks.down = True

    def sleep(_seconds: float) -> None:
        parts.tasks.down = False  # the store is back after any wait

    parts.worker._sleep = sleep
    parts.consumer.failing_seeks = 1
    # when the worker runs
    with caplog.at_level("ERROR", logger="fibod.worker"):
        parts.worker.run()
    # then it stopped at once and said why: nothing committed covers the first message,
    # so the group reads it again from the last commit
    assert parts.worker.rewind_failed
    assert all(offset < 7 for offset in parts.consumer.committed)
    assert parts.tasks.tasks[first.id].state is TaskState.QUEUED
    assert parts.tasks.tasks[second.id].state is TaskState.QUEUED  # not read past it
    assert parts.consumer.closed
    assert any("could not rewind" in r.getMessage() for r in caplog.records)


def test_a_failed_rewind_on_a_partition_already_gone_is_only_logged(caplog) -> None:
    # given a task store down for the first attempt, a consumer that cannot seek,
    # and the group taking the partition away while the unit ran
    parts = Parts()
    task = parts.tasks.create(SN)
    parts.queue(task.id, SN)
    parts.tasks.down = True
    parts.consumer.failing_seeks = 1
    parts.worker._sleep = lambda _seconds: None
    rewind = parts.worker._rewind

    def revoked_first(msg: object) -> None:
        parts.consumer.revoke([0])
        parts.tasks.down = False
        rewind(msg)  # type: ignore[arg-type]

    parts.worker._rewind = revoked_first  # type: ignore[method-assign]
    # when the worker runs
    with caplog.at_level("WARNING", logger="fibod.worker"):
        parts.worker.run()
    # then it went on: the partition's next owner reads the message from the commit
    assert not parts.worker.rewind_failed
    assert any("no longer ours" in r.getMessage() for r in caplog.records)
