"""The task store (Redis #1); the model and its rules: fibod/taskmodel.py.

A task is the hash fibod:task:<id> with fields sn, start, state, done
(text bytes stored so far), text_bytes, created, started, finished (ms
since the epoch) and error. Ready, failed and cancelled tasks expire
after `task_ttl_s`; queued and running ones do not. Ids carry their
creation time and a MAC (fibod/ids.py), so an absent id can be told
"expired" from "unknown". The sorted set fibod:tasks indexes ids by
time for listing, newest first; fibod:live (queued and running) and
fibod:recent (the newest) index them for the monitor: fibod/task_index.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.typing import EncodableT

from fibod import keys
from fibod.config import Settings
from fibod.errors import UnavailableError
from fibod.ids import id_key
from fibod.lua_call import LuaCall
from fibod.redis_client import connect_task_store, store_call
from fibod.taskmodel import (
    Task,
    TaskPage,
    TaskState,
    absent_task_error,
    cancel_outcome,
    index_cutoff,
    new_task,
    now_ms,
)

#: Newest tasks the index keeps for the dashboard's list (older ones drop out).
RECENT_TASKS = 10_000
_STORE = "task store"
#: Ids read from the index per round trip when listing, and at most per page.
LIST_BATCH = 100
LIST_SCAN_MAX = 1000

# Create a task and index it in one command: one round trip, and a single
# command's packing and parsing in the client (the pipeline of six it
# replaced cost the client 1.17x its CPU: bench/task_create.py).
CREATE_TASK_LUA = """
-- KEYS[1]: task key; KEYS[2]: live tasks; KEYS[3]: recent tasks; KEYS[4]: the index.
-- ARGV[1]: task id; ARGV[2]: created (ms); ARGV[3]: TTL seconds, or '' while live;
-- ARGV[4]: recent tasks kept; ARGV[5]: index cutoff (ids below it are older than
-- the TTL); ARGV[6..]: field, value pairs.
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[3] == '' then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
else
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -tonumber(ARGV[4]) - 1)
redis.call('ZADD', KEYS[4], 0, ARGV[1])
-- entries older than the TTL leave the index (their tasks have expired,
-- or run longer than a TTL and are reached by id only)
redis.call('ZREMRANGEBYLEX', KEYS[4], '-', '(' .. ARGV[5])
return 1
"""

# Finish a task (ready or failed). Ready, failed and cancelled are final; only the
# task's owner (the worker that last started it) may finish it, so a late
# writer (a worker cut off while another took its partition over) never
# turns a ready task failed. A late writer never recreates an expired task.
FINISH_TASK_LUA = """
-- KEYS[1]: task key.
-- ARGV[1]: owner id ('' = whoever owns it); ARGV[2]: TTL seconds;
-- ARGV[3..]: field, value pairs, the new state among them.
-- Returns 1 if written, 0 if absent, already final, or owned by another.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'ready' or state == 'failed' or state == 'cancelled' then
    return 0
end
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[1] ~= '' and owner and owner ~= ARGV[1] then
    return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# Record progress: only the owner of a running task, and only forward.
PROGRESS_TASK_LUA = """
-- KEYS[1]: task key. ARGV[1]: owner id; ARGV[2]: text bytes done.
-- Returns 1 if recorded, 0 if not running, owned by another, or not more than before.
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then
    return 0
end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
    return 0
end
if tonumber(ARGV[2]) <= tonumber(redis.call('HGET', KEYS[1], 'done') or '0') then
    return 0
end
redis.call('HSET', KEYS[1], 'done', ARGV[2])
return 1
"""

# Mark a task running, make the caller its owner (a redelivery to another
# worker takes it over), and keep the first start time across redeliveries.
START_TASK_LUA = """
-- KEYS[1]: task key. ARGV[1]: now (ms since the epoch); ARGV[2]: owner id.
-- Returns 1 if marked, 0 if absent or already ready or failed.
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then
    return 0
end
redis.call('HSET', KEYS[1], 'state', 'running', 'owner', ARGV[2])
redis.call('HSETNX', KEYS[1], 'started', ARGV[1])
return 1
"""

# Cancel a task that is queued or running; any other state stays as it is.
# Its work list is emptied too, so its owner and helpers take no more segments.
CANCEL_TASK_LUA = """
-- KEYS[1]: task key; KEYS[2]: its work list (fibod/worklist.py).
-- ARGV[1]: now (ms since the epoch); ARGV[2]: TTL seconds.
-- Returns the state the task had, '' if absent (queued or running: now cancelled).
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
    return ''
end
if state == 'queued' or state == 'running' then
    redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1])
    redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
    redis.call('DEL', KEYS[2])
end
return state
"""


def remove_from_index(pipe: redis.client.Pipeline, task_id: str) -> None:
    """Queue the removal of a deleted task from the index."""
    pipe.zrem(keys.LIVE_KEY, task_id)
    pipe.zrem(keys.RECENT_KEY, task_id)


class TaskStore:
    """Create, read and move tasks between states in Redis #1."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskStore:
        """Open the configured task store (Redis #1)."""
        return cls(
            connect_task_store(settings),
            settings.task_ttl_s,
            id_key(settings.id_secret),
            min_replicas=settings.task_redis_min_replicas,
            wait_ms=settings.task_redis_wait_ms,
        )

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        key: bytes,
        clock: Callable[[], int] = now_ms,
        *,
        min_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> None:
        self._redis = client  # decode_responses=True
        self.ttl_s = ttl_s
        self._key = key
        self._clock = clock
        #: Replicas that must hold a state change before it counts (WAIT).
        self._min_replicas = min_replicas
        self._wait_ms = wait_ms
        self._create = LuaCall(client, CREATE_TASK_LUA)  # one per request: the lean path
        self._finish = client.register_script(FINISH_TASK_LUA)
        self._progress = client.register_script(PROGRESS_TASK_LUA)
        self._start = client.register_script(START_TASK_LUA)
        self._cancel = client.register_script(CANCEL_TASK_LUA)

    def now(self) -> int:
        """Return the store's clock (ms since the epoch), for ETAs."""
        return self._clock()

    @store_call(_STORE)
    def create(self, sn: int, start: int = 0) -> Task:
        """Store a new queued task (ready at once when sn is 0) and index it."""
        now = self._clock()
        task = new_task(sn, now, self._key, start)
        ready = task.state is TaskState.READY
        args: list[EncodableT] = [
            task.id,
            task.created or 0,
            self.ttl_s if ready else "",
            RECENT_TASKS,
            index_cutoff(now, self.ttl_s),
        ]
        for name, value in self._fields(task).items():
            if value != "":
                args += [name, value]
        task_keys = [keys.task_key(task.id), keys.LIVE_KEY, keys.RECENT_KEY, keys.TASK_INDEX_KEY]
        if not self._min_replicas:
            self._create(task_keys, args)
            return task
        with self._redis.pipeline(transaction=False) as pipe:
            # EVAL, not the Script: redis-py sends a Script's SCRIPT EXISTS
            # in a round trip of its own before a pipeline
            pipe.eval(CREATE_TASK_LUA, len(task_keys), *task_keys, *args)
            try:
                self._durably(pipe)
            except UnavailableError:
                # not on enough replicas: a failover could lose it, so it
                # must not be answered; leave no half-accepted task behind
                self.delete(task.id)
                raise
        return task

    @store_call(_STORE)
    def get(self, task_id: str) -> Task | None:
        """Return the task, or None if it is absent."""
        fields = cast(dict[str, str], self._redis.hgetall(keys.task_key(task_id)))  # decoded
        return Task.from_hash(task_id, fields) if fields else None

    def lookup(self, task_id: str) -> Task:
        """Return the task or raise ExpiredError / NotFoundError."""
        task = self.get(task_id)
        if task is not None:
            return task
        raise absent_task_error(task_id, self.ttl_s, self._clock(), self._key)

    @store_call(_STORE)
    def delete(self, task_id: str) -> None:
        """Remove a task (its queue message could not be produced)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.task_key(task_id))
            remove_from_index(pipe, task_id)
            pipe.zrem(keys.TASK_INDEX_KEY, task_id)
            pipe.execute()

    def cancel(self, task_id: str) -> Task:
        """Cancel a queued or running task; workers stop after the segments they hold.

        Raises NotFoundError / ExpiredError for an absent task and
        ConflictError for one already ready or failed.
        """
        before = self._cancel_task(task_id)
        if not before:
            raise absent_task_error(task_id, self.ttl_s, self._clock(), self._key)
        cancel_outcome(task_id, TaskState(before))
        self._leave_live(task_id)
        return self.lookup(task_id)

    @store_call(_STORE)
    def _leave_live(self, task_id: str) -> None:
        self._redis.zrem(keys.LIVE_KEY, task_id)

    @store_call(_STORE)
    def _cancel_task(self, task_id: str) -> str:
        with self._redis.pipeline(transaction=False) as pipe:
            self._cancel(
                keys=[keys.task_key(task_id), keys.todo_key(task_id)],
                args=[self._clock(), self.ttl_s],
                client=pipe,
            )
            return str(self._durably(pipe)[0])

    @store_call(_STORE)
    def list_tasks(self, state: TaskState | None, limit: int, cursor: str | None) -> TaskPage:
        """Return up to `limit` tasks older than `cursor`, newest first.

        Reads the index in batches and examines at most LIST_SCAN_MAX ids
        per page, so a rare state cannot make one request scan everything:
        a page may then hold fewer than `limit` tasks and a next cursor.
        Ids whose task has expired are dropped from the index on the way.
        """
        found: list[Task] = []
        gone: list[str] = []
        upper = "+" if cursor is None else f"({cursor}"
        examined = 0
        try:
            while examined < LIST_SCAN_MAX:
                batch = min(LIST_BATCH, LIST_SCAN_MAX - examined)
                ids = cast(
                    list[str],
                    self._redis.zrevrangebylex(keys.TASK_INDEX_KEY, upper, "-", 0, batch),
                )
                if not ids:
                    return TaskPage(found, None)
                with self._redis.pipeline(transaction=False) as pipe:
                    for task_id in ids:
                        pipe.hgetall(keys.task_key(task_id))
                    hashes = cast(list[dict[str, str]], pipe.execute())
                for task_id, fields in zip(ids, hashes, strict=True):
                    examined += 1
                    upper = f"({task_id}"
                    if not fields:
                        gone.append(task_id)
                        continue
                    task = Task.from_hash(task_id, fields)
                    if state is None or task.state is state:
                        found.append(task)
                        if len(found) == limit:
                            return TaskPage(found, task_id)
            return TaskPage(found, upper[1:])
        finally:
            if gone:
                self._redis.zrem(keys.TASK_INDEX_KEY, *gone)

    @store_call(_STORE)
    def mark_running(self, task_id: str, owner: str) -> bool:
        """Record that owner started the task; False if absent or finished."""
        return bool(self._start(keys=[keys.task_key(task_id)], args=[self._clock(), owner]))

    @store_call(_STORE)
    def set_progress(self, task_id: str, done: int, owner: str) -> bool:
        """Record how many text bytes are stored (forward only; no WAIT: a hint)."""
        return bool(self._progress(keys=[keys.task_key(task_id)], args=[owner, done]))

    def mark_ready(self, task_id: str, text_bytes: int, owner: str = "") -> bool:
        """Mark the task ready with its text length; start its TTL."""
        return self._finish_task(
            task_id,
            owner,
            state=TaskState.READY.value,
            done=text_bytes,
            text_bytes=text_bytes,
            finished=self._clock(),
        )

    def mark_failed(self, task_id: str, error: str, owner: str = "") -> bool:
        """Mark the task failed with a reason; start its TTL."""
        return self._finish_task(
            task_id,
            owner,
            state=TaskState.FAILED.value,
            error=error[:500],
            finished=self._clock(),
        )

    @store_call(_STORE)
    def _finish_task(self, task_id: str, owner: str, **fields: str | int) -> bool:
        args: list[str | int] = [owner, self.ttl_s]
        for name, value in fields.items():
            args += [name, value]
        with self._redis.pipeline(transaction=False) as pipe:
            self._finish(keys=[keys.task_key(task_id)], args=args, client=pipe)
            finished = bool(self._durably(pipe)[0])
        if finished:  # only now: a refused finish leaves a task that is still live
            self._redis.zrem(keys.LIVE_KEY, task_id)
        return finished

    def _durably(self, pipe: redis.client.Pipeline) -> list[Any]:
        """Run the pipeline's writes; with replicas asked for, wait until they have them.

        WAIT counts the replicas holding every earlier write of its own
        connection, so it goes in the same pipeline as the writes.
        """
        if self._min_replicas:
            pipe.wait(self._min_replicas, self._wait_ms)
        results = pipe.execute()
        if self._min_replicas and results[-1] < self._min_replicas:
            raise UnavailableError(
                f"task store: the write reached {results[-1]} of {self._min_replicas} "
                f"replicas within {self._wait_ms} ms"
            )
        return results

    @staticmethod
    def _fields(task: Task) -> dict[str, str]:
        def text(value: object) -> str:
            return "" if value is None else str(value)

        return {
            "sn": text(task.sn),
            "start": text(task.start),
            "state": task.state.value,
            "done": text(task.done),
            "text_bytes": text(task.text_bytes),
            "created": text(task.created),
            "started": text(task.started),
            "finished": text(task.finished),
        }
