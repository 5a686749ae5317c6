"""Task state only moves forward, and only its owner finishes it.

The same specification runs against the Redis task store (its Lua
scripts) and its in-memory twin (fibod/testing.py), so the twin the unit
tests use cannot drift from the real rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from fibod import keys
from fibod.redis_client import connect_task_store
from fibod.tasks import Task, TaskState, TaskStore
from fibod.testing import MemoryTaskStore

OWNER, LATE = "worker-b:42", "worker-a:7"


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, settings) -> TaskStore | MemoryTaskStore:
    """The task store under test: the stack's Redis task store, or the twin."""
    if request.param == "memory":
        return MemoryTaskStore()
    return TaskStore(connect_task_store(settings), settings.task_ttl_s)


@pytest.fixture
def new_task(store, task_redis) -> Iterator[Callable[[int], Task]]:
    """Create tasks in the store under test; delete them from Redis afterwards."""
    made: list[str] = []

    def create(sn: int) -> Task:
        task = store.create(sn)
        made.append(task.id)
        return task

    yield create
    for task_id in made:
        task_redis.delete(keys.task_key(task_id))


def test_a_taken_over_task_cannot_be_finished_by_its_old_owner(store, new_task) -> None:
    # given a task started by a worker that was then cut off, and taken over by another
    task = new_task(10)
    assert store.mark_running(task.id, LATE)
    assert store.mark_running(task.id, OWNER)
    # when the cut-off worker comes back and reports a failure
    assert not store.mark_failed(task.id, "late failure", owner=LATE)
    # then the task stays running for its new owner, who finishes it
    assert store.get(task.id).state is TaskState.RUNNING
    assert store.mark_ready(task.id, 10, 1234, owner=OWNER)
    assert store.get(task.id).state is TaskState.READY


def test_ready_is_final(store, new_task) -> None:
    task = new_task(10)
    store.mark_running(task.id, OWNER)
    assert store.mark_ready(task.id, 10, 1234, owner=OWNER)
    assert not store.mark_failed(task.id, "too late", owner=OWNER)
    assert not store.mark_ready(task.id, 10, 999, owner=OWNER)
    assert not store.mark_running(task.id, LATE)
    final = store.get(task.id)
    assert (final.state, final.text_bytes, final.error) == (TaskState.READY, 1234, None)


def test_progress_only_grows_and_only_for_the_owner(store, new_task) -> None:
    task = new_task(100)
    store.mark_running(task.id, OWNER)
    assert store.set_progress(task.id, 40, OWNER)
    assert not store.set_progress(task.id, 30, OWNER)  # backwards
    assert not store.set_progress(task.id, 90, LATE)  # not the owner
    assert store.get(task.id).done == 40


def test_a_caller_outside_the_workers_finishes_whoever_owns_it(store, new_task) -> None:
    task = new_task(10)
    store.mark_running(task.id, OWNER)
    assert store.mark_ready(task.id, 10, 1234)
    assert store.get(task.id).state is TaskState.READY
