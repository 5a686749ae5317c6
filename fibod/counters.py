"""Counters of what workers and fetches did (segments computed, reused, ...).

They live in the task store, not beside the segments: the sequence store
is a cache that evicts any key when full, and counters that vanish under
memory pressure would hide exactly what an operator needs to see then.
"""

from __future__ import annotations

import redis

from fibod import keys
from fibod.redis_client import store_call

_STORE = "task store"


class Counters:
    """Add to and read the hash fibod:stats."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @store_call(_STORE)
    def add(self, **deltas: int) -> None:
        """Add each delta to its counter (zeros are skipped)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for name, delta in deltas.items():
                if delta:
                    pipe.hincrby(keys.STATS_KEY, name, delta)
            pipe.execute()

    @store_call(_STORE)
    def read(self) -> dict[str, int]:
        """Return every counter, zero for those never counted."""
        raw = self._redis.hgetall(keys.STATS_KEY)
        values = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in keys.STAT_FIELDS} | values

    @store_call(_STORE)
    def reset(self) -> None:
        """Zero every counter."""
        self._redis.delete(keys.STATS_KEY)
