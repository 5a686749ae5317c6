"""Finished units' offsets, batched: what is noted, when it is due, what is taken."""

from __future__ import annotations

import pytest
from confluent_kafka import Message, TopicPartition

from fibod.commits import OffsetBatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _msg(partition: int, offset: int) -> Message:
    return Message(topic="t", partition=partition, offset=offset, value=b"")


def test_notes_on_a_partition_commit_past_its_furthest_unit() -> None:
    batch = OffsetBatch(0.2, Clock())
    # given units finished on two partitions, one of them out of order
    batch.note(_msg(0, 5), "a")
    batch.note(_msg(0, 4), "b")
    batch.note(_msg(1, 9), None)
    # then each partition commits past its furthest unit, naming the tasks
    taken = batch.take()
    assert [(n.partition.partition, n.partition.offset) for n in taken] == [(0, 6), (1, 10)]
    assert taken[0].describe() == "t[0]@6 (task=a task=b)"
    assert taken[1].describe() == "t[1]@10"
    assert not batch and batch.take() == []


def test_notes_are_due_once_the_oldest_waited_the_interval() -> None:
    clock = Clock()
    batch = OffsetBatch(0.2, clock)
    assert not batch.due()  # nothing noted
    batch.note(_msg(0, 1), "a")
    clock.now += 0.15
    batch.note(_msg(0, 2), "b")
    assert not batch.due()
    clock.now += 0.05  # the first note's interval, not the last one's
    assert batch.due()
    batch.take()
    assert not batch.due()


def test_an_interval_of_zero_is_due_at_once() -> None:
    batch = OffsetBatch(0, Clock())
    batch.note(_msg(0, 1), "a")
    assert batch.due()


def test_taking_some_partitions_leaves_the_others_noted() -> None:
    batch = OffsetBatch(0.2, Clock())
    batch.note(_msg(0, 1), "a")
    batch.note(_msg(1, 2), "b")
    taken = batch.take([TopicPartition("t", 1)])
    assert [n.partition.partition for n in taken] == [1]
    assert [n.partition.partition for n in batch.take()] == [0]


def test_a_message_without_a_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="without topic, partition or offset"):
        OffsetBatch(0.2).note(Message(topic="t", value=b""), "a")


def test_the_furthest_unit_s_leader_epoch_goes_with_its_offset() -> None:
    batch = OffsetBatch(0.2, Clock())
    batch.note(Message(topic="t", partition=0, offset=4, value=b"", leader_epoch=3), "a")
    batch.note(Message(topic="t", partition=0, offset=2, value=b"", leader_epoch=2), "b")
    (noted,) = batch.take()
    assert (noted.partition.offset, noted.partition.leader_epoch) == (5, 3)


def test_a_poll_waits_no_longer_than_the_interval_while_anything_is_noted() -> None:
    batch = OffsetBatch(0.2, Clock())
    assert batch.poll_wait_s(1.0) == 1.0
    batch.note(_msg(0, 1), "a")
    assert batch.poll_wait_s(1.0) == 0.2
    assert batch.poll_wait_s(0.1) == 0.1
