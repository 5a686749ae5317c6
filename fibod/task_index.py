"""Read the task index: live tasks by state, the newest tasks page by page.

The task store writes two sorted sets scored by creation time
(fibod/tasks.py): fibod:live holds queued and running tasks (a task
leaves it when it is finished or deleted), fibod:recent the newest
RECENT_TASKS tasks of any state. Reading heals them: an id whose task is
finished, expired or gone is dropped, so a state change written by
other code (a cancel, a hand-made edit) never leaves a task counted as
live for long. This is the small index the monitor needs for tasks by
state and the dashboard's list; a general task list with filters would
replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from fibod import keys
from fibod.redis_client import store_call
from fibod.tasks import Task, TaskState

_STORE = "task store"
#: Most live tasks one summary reads (their states); the count stays exact.
LIVE_READ_LIMIT = 20_000
_LIVE = (TaskState.QUEUED, TaskState.RUNNING)


@dataclass(frozen=True)
class LiveSummary:
    """Queued and running tasks: how many, and the creation time of the oldest."""

    counts: dict[str, int]
    oldest_created_ms: dict[str, int | None]
    #: Live tasks counted without reading their state (past LIVE_READ_LIMIT), as queued.
    unread: int = 0


class TaskIndex:
    """The live and recent task sets of the task store."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client  # decode_responses=True

    @store_call(_STORE)
    def live_summary(self) -> LiveSummary:
        """Count queued and running tasks and find the oldest of each, oldest first."""
        total = int(self._redis.zcard(keys.LIVE_KEY))
        entries = cast(
            list[tuple[str, float]],
            self._redis.zrange(keys.LIVE_KEY, 0, LIVE_READ_LIMIT - 1, withscores=True),
        )
        states = self._field(entries, "state")
        counts = {state.value: 0 for state in _LIVE}
        oldest: dict[str, int | None] = {state.value: None for state in _LIVE}
        stale = []
        for (task_id, created), state in zip(entries, states, strict=True):
            if state not in counts:
                stale.append(task_id)
                continue
            counts[state] += 1
            if oldest[state] is None:
                oldest[state] = int(created)
        self._forget(keys.LIVE_KEY, stale)
        unread = max(0, total - len(entries))
        counts[TaskState.QUEUED.value] += unread
        return LiveSummary(counts, oldest, unread)

    @store_call(_STORE)
    def recent(self, limit: int, before_ms: int | None = None) -> list[Task]:
        """Return up to `limit` newest tasks created before `before_ms`, newest first."""
        high = f"({before_ms}" if before_ms is not None else "+inf"
        tasks: list[Task] = []
        while len(tasks) < limit:
            entries = cast(
                list[tuple[str, float]],
                self._redis.zrevrangebyscore(
                    keys.RECENT_KEY, high, "-inf", start=0, num=limit - len(tasks), withscores=True
                ),
            )
            if not entries:
                break
            with self._redis.pipeline(transaction=False) as pipe:
                for task_id, _created in entries:
                    pipe.hgetall(keys.task_key(task_id))
                found = pipe.execute()
            gone = [task_id for (task_id, _), raw in zip(entries, found, strict=True) if not raw]
            tasks += [
                Task.from_hash(task_id, raw)
                for (task_id, _), raw in zip(entries, found, strict=True)
                if raw
            ]
            self._forget(keys.RECENT_KEY, gone)
            high = f"({int(entries[-1][1])}"
        return tasks

    def _field(self, entries: list[tuple[str, float]], name: str) -> list[str | None]:
        with self._redis.pipeline(transaction=False) as pipe:
            for task_id, _created in entries:
                pipe.hget(keys.task_key(task_id), name)
            return cast(list[str | None], pipe.execute())

    def _forget(self, key: str, ids: list[str]) -> None:
        if ids:
            self._redis.zrem(key, *ids)
