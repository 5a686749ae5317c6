"""Creating a task: the one-script create, called two ways, against the pipeline it replaced.

    make up; .venv/bin/python bench/task_create.py [calls] [rounds]

CPU time of this process (the client's cost: what a submit process pays
per request) and wall time per create, on the running stack's task
store, interleaved round by round. The baseline is the pipeline as it
was before 2026-11-29 (HSET, ZADD live, ZADD recent, ZREMRANGEBYRANK,
ZADD index, ZREMRANGEBYLEX), written here against the same keys. The
script is called as TaskStore does (fibod/lua_call.py's LuaCall, since
2026-11-30) and through redis-py's Script, as before. The tasks made are
deleted afterwards.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from fibod import keys
from fibod.config import discover
from fibod.taskmodel import TaskState, index_cutoff, new_task
from fibod.tasks import CREATE_TASK_LUA, RECENT_TASKS, TaskStore


def pipeline_create(store: TaskStore, sn: int) -> str:
    """The create of before: one pipeline of six commands (no replicas asked for)."""
    now = store.now()
    task = new_task(sn, now, store._key)
    mapping = {k: v for k, v in store._fields(task).items() if v != ""}
    with store._redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.task_key(task.id), mapping=mapping)
        if task.state is not TaskState.READY:
            pipe.zadd(keys.LIVE_KEY, {task.id: now})
        pipe.zadd(keys.RECENT_KEY, {task.id: now})
        pipe.zremrangebyrank(keys.RECENT_KEY, 0, -RECENT_TASKS - 1)
        pipe.zadd(keys.TASK_INDEX_KEY, {task.id: 0})
        pipe.zremrangebylex(keys.TASK_INDEX_KEY, "-", f"({index_cutoff(now, store.ttl_s)}")
        pipe.execute()
    return task.id


def timed(create: Callable[[], str], calls: int, made: list[str]) -> tuple[float, float]:
    """Microseconds of CPU and of wall time per call."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        made.append(create())
    return (
        1e6 * (time.process_time() - cpu) / calls,
        1e6 * (time.perf_counter() - wall) / calls,
    )


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    store = TaskStore.from_settings(discover())
    through_redis_py = TaskStore.from_settings(discover())
    script = through_redis_py._redis.register_script(CREATE_TASK_LUA)
    through_redis_py._create = lambda keys, args: script(keys=keys, args=args)  # type: ignore[assignment]
    made: list[str] = []
    runs: dict[str, list[tuple[float, float]]] = {
        "pipeline (baseline)": [],
        "script, redis-py's Script": [],
        "script": [],
    }
    try:
        for each in (store, through_redis_py):  # connections and script loaded
            timed(lambda each=each: each.create(100).id, 200, made)
        for _ in range(rounds):
            runs["pipeline (baseline)"].append(
                timed(lambda: pipeline_create(store, 100), calls, made)
            )
            runs["script, redis-py's Script"].append(
                timed(lambda: through_redis_py.create(100).id, calls, made)
            )
            runs["script"].append(timed(lambda: store.create(100).id, calls, made))
    finally:
        for task_id in made:
            store.delete(task_id)
    print(f"| create, {calls} calls x {rounds} rounds | client CPU per call | wall per call |")
    print("|---|---|---|")
    cpu = {}
    for name, results in runs.items():
        cpu[name] = statistics.median(r[0] for r in results)
        wall = statistics.median(r[1] for r in results)
        print(f"| {name} | {cpu[name]:.0f} µs | {wall:.0f} µs |")
    print(f"\nthe script costs the client **{cpu['script'] / cpu['pipeline (baseline)']:.2f}x**")
    lean = cpu["script"] / cpu["script, redis-py's Script"]
    print(f"LuaCall costs the client **{lean:.2f}x** of redis-py's Script")


if __name__ == "__main__":
    main()
