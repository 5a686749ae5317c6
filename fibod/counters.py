"""Counters of what workers and fetches did (segments computed, reused, ...).

They live in the task store, not beside the segments: the sequence store
is a cache that evicts any key when full, and counters that vanish under
memory pressure would hide exactly what an operator needs to see then.

Each addition also goes into the hash of its time bucket (RATE_BUCKET_S
wide, kept RATE_HISTORY_S), so the dashboard can chart throughput over
the last minutes from any host, without a metrics server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any

import redis

from fibod import keys
from fibod.redis_client import store_call

_STORE = "task store"
#: Width of one throughput bucket, seconds.
RATE_BUCKET_S = 10
#: How long a bucket is kept, seconds (the chart's window and some slack).
RATE_HISTORY_S = 900


class Counters:
    """Add to and read the hash fibod:stats and its time buckets."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._clock = clock

    @store_call(_STORE)
    def add(self, **deltas: int) -> None:
        """Add each delta to its counter and its time bucket (zeros are skipped)."""
        bucket = keys.rate_key(int(self._clock()) // RATE_BUCKET_S * RATE_BUCKET_S)
        with self._redis.pipeline(transaction=False) as pipe:
            for name, delta in deltas.items():
                if delta:
                    pipe.hincrby(keys.STATS_KEY, name, delta)
                    pipe.hincrby(bucket, name, delta)
            pipe.expire(bucket, RATE_HISTORY_S)
            pipe.execute()

    @store_call(_STORE)
    def read(self) -> dict[str, int]:
        """Return every counter, zero for those never counted."""
        return _with_all_fields(self._redis.hgetall(keys.STATS_KEY))

    @store_call(_STORE)
    def history(self, window_s: int) -> list[tuple[int, dict[str, int]]]:
        """Return (bucket start, counters added in it) for each bucket of the window, oldest first.

        The bucket in progress is left out: it would chart as a dip.
        """
        now = int(self._clock()) // RATE_BUCKET_S * RATE_BUCKET_S
        starts = list(range(now - window_s, now, RATE_BUCKET_S))
        with self._redis.pipeline(transaction=False) as pipe:
            for start in starts:
                pipe.hgetall(keys.rate_key(start))
            found = pipe.execute()
        return [(start, _with_all_fields(raw)) for start, raw in zip(starts, found, strict=True)]

    @store_call(_STORE)
    def reset(self) -> None:
        """Zero every counter."""
        self._redis.delete(keys.STATS_KEY)


def _with_all_fields(raw: Mapping[Any, Any]) -> dict[str, int]:
    values = {_text(k): int(_text(v)) for k, v in raw.items()}
    return {name: values.get(name, 0) for name in keys.STAT_FIELDS} | values


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Tally:
    """Add to a counter from a hot loop (a stream) without ever waiting on the store.

    At most one addition is in flight, run by `executor`; amounts that
    come meanwhile are summed into the next one, so a slow or frozen
    store never slows the loop, and a stream's bytes show in the
    throughput chart while it runs, not only when it ends.
    """

    def __init__(self, add: Callable[[int], None], executor: Executor) -> None:
        self._add = add
        self._executor = executor
        self._pending = 0
        self._future: Future[None] | None = None

    def add(self, amount: int) -> None:
        """Count amount, now if no addition is in flight, else with the next one."""
        self._pending += amount
        if self._future is None or self._future.done():
            self.flush()

    def flush(self) -> None:
        """Hand what is pending to the executor."""
        if self._pending:
            amount, self._pending = self._pending, 0
            self._future = self._executor.submit(self._add, amount)
