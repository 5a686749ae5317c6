"""A task's work list: its missing segments handed out one at a time.

The owner of a task publishes the segments it lacks once. The owner and
its helpers take them from a list (LPOP: each segment handed out once,
and nobody scans what is pending); a helper reports each segment it got
stored on a stream, which the owner reads blocking (XREAD BLOCK), all
new reports at once, instead of polling the sequence store. Both keys
live in the task store, which never evicts, and expire on their own if a
task is abandoned: the stream is made with its TTL when the list is
published, and reports never make one (NOMKSTREAM).
"""

from __future__ import annotations

from typing import Any

import redis

from fibod import keys
from fibod.redis_client import store_call

_STORE = "task store"
#: Seconds a work list outlives its last publication (a task abandoned midway).
WORK_TTL_S = 3600
#: Segments handed out (and reported) at a time: one command moves two
#: segments, and there are still enough turns for every worker to share.
TAKE_COUNT = 2
#: Reports the owner reads in one call at most.
_READ_COUNT = 1000


class WorkList:
    """Publish, take, report and wait for a task's segments."""

    def __init__(self, client: redis.Redis, ttl_s: int = WORK_TTL_S) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        #: The last report each task's owner read (stream ids), per task.
        self._read_from: dict[str, str] = {}

    @store_call(_STORE)
    def publish(self, task_id: str, js: list[int]) -> None:
        """Replace the task's keys: js to hand out, nothing reported yet."""
        todo, done = keys.todo_key(task_id), keys.done_key(task_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(todo, done)
            if js:
                pipe.rpush(todo, *js)
                pipe.expire(todo, self._ttl_s)
            pipe.xadd(done, {"j": -1})  # the stream exists from now on, with a TTL
            pipe.expire(done, self._ttl_s)
            *_, first_id, _ = pipe.execute()
        self._read_from[task_id] = first_id

    @store_call(_STORE)
    def take(self, task_id: str) -> list[int]:
        """Hand out the next TAKE_COUNT segments (fewer at the end, none when done)."""
        return _ints(self._redis.lpop(keys.todo_key(task_id), TAKE_COUNT))

    @store_call(_STORE)
    def report_and_take(self, task_id: str, js: list[int]) -> list[int]:
        """Report segments js stored and take the next ones, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(keys.done_key(task_id), {"j": ",".join(map(str, js))}, nomkstream=True)
            pipe.lpop(keys.todo_key(task_id), TAKE_COUNT)
            _reported, values = pipe.execute()
        return _ints(values)

    @store_call(_STORE)
    def wait(self, task_id: str, timeout_s: float) -> list[int]:
        """Wait for helpers' reports: every segment reported since the last call.

        Empty after timeout_s without a report. Only the task's owner, in
        the process that published, calls this.
        """
        done = keys.done_key(task_id)
        got: Any = self._redis.xread(
            {done: self._read_from[task_id]}, count=_READ_COUNT, block=int(timeout_s * 1000)
        )
        reported = []
        for _stream, entries in got or []:
            for entry_id, fields in entries:
                self._read_from[task_id] = entry_id
                reported += _ints(str(fields.get("j", fields.get(b"j"))).split(","))
        return [j for j in reported if j >= 0]

    @store_call(_STORE)
    def finish(self, task_id: str) -> None:
        """Drop the task's keys (helpers still taking find nothing)."""
        self._redis.delete(keys.todo_key(task_id), keys.done_key(task_id))
        self._read_from.pop(task_id, None)


def _ints(values: Any) -> list[int]:
    """Read LPOP's answer (None, or a list of numbers as bytes or text) as ints."""
    return [int(v) for v in values or []]
