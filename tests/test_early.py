"""Waiting for a running task's segments (fibod/early.py), with a fake clock and store."""

from __future__ import annotations

import pytest

from fibod.early import MAX_STEP_S, STATE_EVERY_S, SegmentWait, StreamAbandoned
from fibod.errors import ExpiredError, NotFoundError, UnavailableError
from fibod.taskmodel import TaskState


class World:
    """A segment that is stored at `stored_at` seconds, a task whose state changes."""

    def __init__(self, stored_at: float | None, states: dict[float, object]) -> None:
        self.now = 0.0
        self.stored_at = stored_at
        self.states = states  # time -> TaskState, or an exception to raise from then on
        self.reads = 0
        self.looks = 0

    def read(self, j: int) -> bytes | None:
        self.reads += 1
        stored = self.stored_at is not None and self.now >= self.stored_at
        return f"segment {j}".encode() if stored else None

    def state(self) -> TaskState:
        self.looks += 1
        current: object = TaskState.RUNNING
        for since in sorted(self.states):
            if self.now >= since:
                current = self.states[since]
        if isinstance(current, Exception):
            raise current
        assert isinstance(current, TaskState)
        return current

    def sleep(self, seconds: float) -> None:
        assert 0 < seconds <= MAX_STEP_S
        self.now += seconds

    def waiter(self, patience_s: float = 30) -> SegmentWait:
        return SegmentWait(self.read, self.state, patience_s, self.sleep, lambda: self.now)


def test_a_segment_stored_later_is_returned_once_it_is_there() -> None:
    world = World(stored_at=0.3, states={})
    assert world.waiter().until_stored(7) == b"segment 7"
    # looked for it with growing pauses, not in a busy loop, and at the task now and then
    assert 0.3 <= world.now < 0.3 + MAX_STEP_S
    assert world.reads <= 0.3 / MAX_STEP_S + 10
    assert 1 <= world.looks <= 0.3 / STATE_EVERY_S + 1


def test_a_stored_segment_costs_one_read() -> None:
    world = World(stored_at=0.0, states={})
    assert world.waiter().until_stored(0) == b"segment 0"
    assert (world.reads, world.looks, world.now) == (1, 0, 0.0)


def test_a_task_ready_without_the_segment_leaves_it_to_the_caller() -> None:
    # the segment was evicted: the fetch app computes it
    world = World(stored_at=None, states={0.1: TaskState.READY})
    assert world.waiter().until_stored(3) is None
    assert world.now < 0.1 + STATE_EVERY_S + MAX_STEP_S


@pytest.mark.parametrize(
    "end",
    [
        TaskState.CANCELLED,
        TaskState.FAILED,
        ExpiredError("task expired"),
        NotFoundError("no such task"),
    ],
)
def test_a_task_that_will_not_complete_stops_the_stream(end: object) -> None:
    world = World(stored_at=None, states={0.2: end})
    with pytest.raises(StreamAbandoned):
        world.waiter().until_stored(1)
    assert world.now < 0.2 + STATE_EVERY_S + MAX_STEP_S


def test_an_unreachable_task_store_keeps_the_wait_going() -> None:
    world = World(stored_at=0.5, states={0.0: UnavailableError("task store down")})
    assert world.waiter().until_stored(2) == b"segment 2"


def test_a_segment_that_never_comes_is_given_up_after_the_patience() -> None:
    world = World(stored_at=None, states={})
    waiter = world.waiter(patience_s=2)
    assert waiter.until_stored(9) is None
    assert 2 <= world.now < 2 + MAX_STEP_S
    # and once given up, every later missing segment is left to the caller at once
    given_up_at, reads = world.now, world.reads
    assert waiter.until_stored(10) is None
    assert (world.now, world.reads) == (given_up_at, reads + 1)


def test_the_patience_bounds_the_whole_stream_not_each_segment() -> None:
    # given segments that come every 0.8 s, with a patience of 1 s
    world = World(stored_at=0.8, states={})
    waiter = world.waiter(patience_s=1)
    # then each is waited for, as every one came within the patience of the last
    assert waiter.until_stored(0) == b"segment 0"
    world.stored_at = 1.6
    assert waiter.until_stored(1) == b"segment 1"
    # but one that does not come within 1 s of the last is given up
    world.stored_at = None
    assert waiter.until_stored(2) is None
    assert world.now < 1.6 + 1 + 2 * MAX_STEP_S  # read up to a pause late, given up as late
