"""A task is acknowledged only once enough replicas hold it (WAIT).

The one-machine task store has no replica, which makes it the place to
check the refusal: a store asked for one replica must refuse the task
and keep nothing of it. The rehearsal (tests/cluster/) checks the other
half: with a replica, an acknowledged task survives losing the primary.
"""

from __future__ import annotations

import time

import pytest
import redis

from fibod import keys
from fibod.errors import UnavailableError
from fibod.ids import id_key
from fibod.redis_client import connect_task_store
from fibod.tasks import TaskState, TaskStore


def _ids_created_at(client: redis.Redis, created_ms: int) -> list[str]:
    prefix = f"{keys.TASK_PREFIX}{created_ms:012x}"
    return [key.decode() for key in client.scan_iter(match=prefix + "*", count=1000)]


def test_a_task_no_replica_holds_is_refused_and_forgotten(settings, task_redis) -> None:
    # given a task store that must see each task on one replica, and has none
    created_ms = time.time_ns() // 1_000_000 - 7_777  # an instant no other task has
    store = TaskStore(
        connect_task_store(settings),
        settings.task_ttl_s,
        id_key(settings.id_secret),
        clock=lambda: created_ms,
        min_replicas=1,
        wait_ms=200,
    )
    # when a task is created
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="reached 0 of 1 replicas within 200 ms"):
        store.create(5)
    waited_s = time.monotonic() - started
    # then it was refused after the WAIT, and nothing of it is left, not even in the index
    assert 0.15 <= waited_s < 2.0
    assert _ids_created_at(task_redis, created_ms) == []
    prefix = f"{created_ms:012x}"
    assert task_redis.zrangebylex(keys.TASK_INDEX_KEY, f"[{prefix}", f"[{prefix}g") == []


def test_without_replicas_asked_for_a_task_is_stored_at_once(settings, task_redis) -> None:
    created_ms = time.time_ns() // 1_000_000 - 8_888
    key = id_key(settings.id_secret)
    store = TaskStore(
        connect_task_store(settings), settings.task_ttl_s, key, clock=lambda: created_ms
    )
    task = store.create(5)
    assert task.state is TaskState.QUEUED
    assert _ids_created_at(task_redis, created_ms) == [keys.task_key(task.id)]
    task_redis.delete(keys.task_key(task.id))
