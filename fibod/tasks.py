"""The task model and the task store (Redis #1).

A task is the hash fibod:task:<id> with fields sn, state, done,
text_bytes, created, started, finished (ms since the epoch) and error.
Ready and failed tasks expire after `task_ttl_s`; queued and running
ones do not. Ids carry their creation time (12 hex digits of ms, then 8
random hex digits), so an absent id can be told "expired" from "unknown".
Every new task is also indexed (fibod:live while queued or running,
fibod:recent among the newest), for the monitor: fibod/task_index.py.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT

from fibod import keys
from fibod.config import Settings
from fibod.errors import ExpiredError, InputError, NotFoundError, UnavailableError
from fibod.redis_client import connect_task_store, store_call

TASK_ID_RE = re.compile(r"[0-9a-f]{20}")
#: Newest tasks the index keeps for the dashboard's list (older ones drop out).
RECENT_TASKS = 10_000
_STORE = "task store"

# Finish a task (ready or failed). Ready and failed are final, and only the
# task's owner (the worker that last started it) may finish it, so a late
# writer (a worker cut off while another took its partition over) never
# turns a ready task failed. A late writer never recreates an expired task.
FINISH_TASK_LUA = """
-- KEYS[1]: task key.
-- ARGV[1]: owner id ('' = whoever owns it); ARGV[2]: TTL seconds;
-- ARGV[3..]: field, value pairs, the new state among them.
-- Returns 1 if written, 0 if absent, already ready or failed, or owned by another.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'ready' or state == 'failed' then
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
-- KEYS[1]: task key. ARGV[1]: owner id; ARGV[2]: numbers done.
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


class TaskState(StrEnum):
    """Where a task is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


def now_ms() -> int:
    """Return wall-clock time in ms, the unit of every task timestamp."""
    return time.time_ns() // 1_000_000


def new_task_id(created_ms: int) -> str:
    """Make an id that embeds its creation time."""
    return f"{created_ms:012x}{secrets.token_hex(4)}"


def parse_task_id(text: str) -> str:
    """Accept exactly 20 lowercase hex digits, else raise InputError."""
    if not TASK_ID_RE.fullmatch(text):
        raise InputError(f"malformed task id {text[:40]!r}: expected 20 lowercase hex digits")
    return text


def id_created_ms(task_id: str) -> int:
    """Return the creation time embedded in a well-formed id."""
    return int(task_id[:12], 16)


@dataclass(frozen=True, kw_only=True)
class Task:
    """One task as the task store holds it."""

    id: str
    sn: int
    state: TaskState
    done: int = 0
    text_bytes: int | None = None
    created: int | None = None
    started: int | None = None
    finished: int | None = None
    error: str | None = None
    #: The worker that last started the task; only it may finish it.
    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Describe the task for clients (GET /myapp/tasks/<id>)."""
        body: dict[str, Any] = {
            "id": self.id,
            "sn": self.sn,
            "state": str(self.state),
            "progress": self.done,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
        }
        if self.text_bytes is not None:
            body["text_bytes"] = self.text_bytes
        if self.error:
            body["error"] = self.error
        return body

    @classmethod
    def from_hash(cls, task_id: str, fields: dict[str, str]) -> Task:
        """Build a task from its Redis hash."""

        def opt_int(name: str) -> int | None:
            value = fields.get(name)
            return int(value) if value not in (None, "") else None

        return cls(
            id=task_id,
            sn=int(fields["sn"]),
            state=TaskState(fields["state"]),
            done=int(fields.get("done") or 0),
            text_bytes=opt_int("text_bytes"),
            created=opt_int("created"),
            started=opt_int("started"),
            finished=opt_int("finished"),
            error=fields.get("error") or None,
            owner=fields.get("owner") or None,
        )


def new_task(sn: int, created_ms: int) -> Task:
    """Make the task for sn: queued, or ready at once when sn is 0.

    sn=0 asks for no number, so there is nothing to compute and no reason
    for a round trip through the queue.
    """
    task_id = new_task_id(created_ms)
    if sn == 0:
        return Task(
            id=task_id,
            sn=0,
            state=TaskState.READY,
            text_bytes=0,
            created=created_ms,
            started=created_ms,
            finished=created_ms,
        )
    return Task(id=task_id, sn=sn, state=TaskState.QUEUED, created=created_ms)


def may_finish(task: Task | None, owner: str) -> bool:
    """Tell whether owner may make the task ready or failed (FINISH_TASK_LUA's rule).

    Ready and failed are final. Only the task's owner finishes it; an
    empty owner is a caller outside the workers, which finishes whoever
    owns it.
    """
    if task is None or task.state in (TaskState.READY, TaskState.FAILED):
        return False
    return not owner or task.owner is None or task.owner == owner


def may_progress(task: Task | None, owner: str, done: int) -> bool:
    """Tell whether owner may record `done` numbers (PROGRESS_TASK_LUA's rule)."""
    return (
        task is not None
        and task.state is TaskState.RUNNING
        and task.owner == owner
        and done > task.done
    )


def add_to_index(pipe: redis.client.Pipeline, task: Task) -> None:
    """Queue the index writes of a new task (fibod/task_index.py reads them)."""
    created = task.created or 0
    if task.state is not TaskState.READY:
        pipe.zadd(keys.LIVE_KEY, {task.id: created})
    pipe.zadd(keys.RECENT_KEY, {task.id: created})
    pipe.zremrangebyrank(keys.RECENT_KEY, 0, -RECENT_TASKS - 1)


def remove_from_index(pipe: redis.client.Pipeline, task_id: str) -> None:
    """Queue the removal of a deleted task from the index."""
    pipe.zrem(keys.LIVE_KEY, task_id)
    pipe.zrem(keys.RECENT_KEY, task_id)


def absent_task_error(task_id: str, ttl_s: int, now: int) -> ExpiredError | NotFoundError:
    """Say why no task has this id: expired if older than the TTL, else unknown.

    Ids carry their creation time, so an absent task older than the TTL
    is one whose result has expired.
    """
    if id_created_ms(task_id) + ttl_s * 1000 < now:
        return ExpiredError(f"task {task_id} has expired")
    return NotFoundError(f"no task with id {task_id}")


class TaskStore:
    """Create, read and move tasks between states in Redis #1."""

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskStore:
        """Open the configured task store (Redis #1)."""
        return cls(
            connect_task_store(settings),
            settings.task_ttl_s,
            min_replicas=settings.task_redis_min_replicas,
            wait_ms=settings.task_redis_wait_ms,
        )

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        clock: Callable[[], int] = now_ms,
        *,
        min_replicas: int = 0,
        wait_ms: int = 1000,
    ) -> None:
        self._redis = client  # decode_responses=True
        self.ttl_s = ttl_s
        self._clock = clock
        #: Replicas that must hold a state change before it counts (WAIT).
        self._min_replicas = min_replicas
        self._wait_ms = wait_ms
        self._finish = client.register_script(FINISH_TASK_LUA)
        self._progress = client.register_script(PROGRESS_TASK_LUA)
        self._start = client.register_script(START_TASK_LUA)

    @store_call(_STORE)
    def create(self, sn: int) -> Task:
        """Store a new queued task (ready at once when sn is 0)."""
        task = new_task(sn, self._clock())
        mapping: dict[FieldT, EncodableT] = {k: v for k, v in self._fields(task).items() if v != ""}
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.task_key(task.id), mapping=mapping)
            if task.state is TaskState.READY:
                pipe.expire(keys.task_key(task.id), self.ttl_s)
            add_to_index(pipe, task)
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
        raise absent_task_error(task_id, self.ttl_s, self._clock())

    @store_call(_STORE)
    def delete(self, task_id: str) -> None:
        """Remove a task (its queue message could not be produced)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.task_key(task_id))
            remove_from_index(pipe, task_id)
            pipe.execute()

    @store_call(_STORE)
    def mark_running(self, task_id: str, owner: str) -> bool:
        """Record that owner started the task; False if absent or finished."""
        return bool(self._start(keys=[keys.task_key(task_id)], args=[self._clock(), owner]))

    @store_call(_STORE)
    def set_progress(self, task_id: str, done: int, owner: str) -> bool:
        """Record how many numbers are stored (forward only; no WAIT: a hint)."""
        return bool(self._progress(keys=[keys.task_key(task_id)], args=[owner, done]))

    def mark_ready(self, task_id: str, sn: int, text_bytes: int, owner: str = "") -> bool:
        """Mark the task ready with its text length; start its TTL."""
        return self._finish_task(
            task_id,
            owner,
            state=TaskState.READY.value,
            done=sn,
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
            "state": task.state.value,
            "done": text(task.done),
            "text_bytes": text(task.text_bytes),
            "created": text(task.created),
            "started": text(task.started),
            "finished": text(task.finished),
        }
