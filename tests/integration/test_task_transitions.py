"""Task state only moves forward, only its owner finishes it, a cancel is final.

The same specification runs against the Redis task store (its Lua
scripts) and its in-memory twin (fibod/testing.py), so the twin the unit
tests use cannot drift from the real rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from fibod import keys
from fibod.errors import ConflictError, NotFoundError
from fibod.ids import id_key
from fibod.redis_client import connect_task_store
from fibod.tasks import Task, TaskState, TaskStore
from fibod.testing import MemoryTaskStore

OWNER, LATE = "worker-b:42", "worker-a:7"


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, settings) -> TaskStore | MemoryTaskStore:
    """The task store under test: the stack's Redis task store, or the twin."""
    if request.param == "memory":
        return MemoryTaskStore()
    return TaskStore(connect_task_store(settings), settings.task_ttl_s, id_key(settings.id_secret))


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
    assert store.mark_ready(task.id, 1234, owner=OWNER)
    assert store.get(task.id).state is TaskState.READY


def test_ready_is_final(store, new_task) -> None:
    task = new_task(10)
    store.mark_running(task.id, OWNER)
    assert store.mark_ready(task.id, 1234, owner=OWNER)
    assert not store.mark_failed(task.id, "too late", owner=OWNER)
    assert not store.mark_ready(task.id, 999, owner=OWNER)
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
    assert store.mark_ready(task.id, 1234)
    assert store.get(task.id).state is TaskState.READY


@pytest.mark.parametrize("started", [False, True])
def test_a_cancel_is_final_for_the_owner_and_everyone(store, new_task, started: bool) -> None:
    # given a queued task, or one its owner runs
    task = new_task(10)
    if started:
        store.mark_running(task.id, OWNER)
    # when it is cancelled
    assert store.cancel(task.id).state is TaskState.CANCELLED
    # then nobody moves it on: not its owner, not a newcomer, not progress
    assert not store.mark_ready(task.id, 1234, owner=OWNER)
    assert not store.mark_ready(task.id, 1234)
    assert not store.mark_failed(task.id, "late", owner=OWNER)
    assert not store.mark_running(task.id, LATE)
    assert not store.set_progress(task.id, 5, OWNER)
    cancelled = store.get(task.id)
    assert cancelled.state is TaskState.CANCELLED and cancelled.finished is not None
    # and cancelling again is no error
    assert store.cancel(task.id).state is TaskState.CANCELLED


def test_an_ended_task_cannot_be_cancelled_and_an_unknown_one_is_not_found(store, new_task) -> None:
    task = new_task(10)
    store.mark_ready(task.id, 1234)
    with pytest.raises(ConflictError, match="already ready"):
        store.cancel(task.id)
    assert store.get(task.id).state is TaskState.READY
    with pytest.raises(NotFoundError):
        store.cancel(task.id[:-1] + ("0" if task.id[-1] != "0" else "1"))


def test_the_listing_is_newest_first_and_filters_by_state(store, new_task) -> None:
    # given three tasks made in this order, a millisecond apart (ids order by it), the
    # second cancelled
    made = []
    for sn in (10, 20, 30):
        made.append(new_task(sn))
        if isinstance(store, MemoryTaskStore):
            store.clock += 1
        else:
            time.sleep(0.002)
    store.cancel(made[1].id)
    # then they are listed newest first, across pages
    first = store.list_tasks(None, 2, None)
    assert [t.id for t in first.tasks][:2] == [made[2].id, made[1].id]
    rest = store.list_tasks(None, 1, first.next_cursor)
    assert rest.tasks[0].id == made[0].id
    cancelled = store.list_tasks(TaskState.CANCELLED, 100, None)
    assert made[1].id in [t.id for t in cancelled.tasks]
    assert made[0].id not in [t.id for t in cancelled.tasks]
