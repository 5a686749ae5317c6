"""The sequence store (Redis #2): stored segments, claims and counters.

Segment j of the layout lives at fibod:seg:<segment_bytes>:<j>, written
once with SET NX: encoding is deterministic, so a second writer would
only repeat the same bytes. A claim (SET NX PX) marks a segment as being
computed, so concurrent tasks never compute the same segment twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.cluster import RedisCluster

from fibod import keys
from fibod.config import Settings
from fibod.counters import Counters
from fibod.planner import Claim
from fibod.redis_client import RedisClient, connect_sequence_store, connect_task_store, store_call
from fibod.segments import (
    SegmentLayout,
)

_STORE = "sequence store"
_SCAN_COUNT = 1000

# Delete a damaged segment only if nobody replaced it meanwhile.
DISCARD_SEGMENT_LUA = """
-- KEYS[1]: segment key. ARGV[1]: the damaged bytes read before.
-- Returns 1 if deleted, 0 if absent or replaced.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class NodeStats:
    """One Redis server of the store: its share of keys and memory."""

    address: str
    keys: int
    used_memory: int
    maxmemory: int
    evicted_keys: int


@dataclass(frozen=True)
class CacheStats:
    """What the sequence store holds, for `fibod cache stats`."""

    segment_bytes: int
    segments: int
    numbers: int
    bytes: int
    prefix_sn: int
    claims: int
    other_layouts: int
    counters: dict[str, int]
    #: Each server (each master of a Redis Cluster).
    nodes: list[NodeStats]


class SequenceStore:
    """Read, write and claim segments of one layout in Redis #2."""

    @classmethod
    def from_settings(cls, settings: Settings, admin: bool = False) -> SequenceStore:
        """Open the configured sequence store (Redis #2) and its layout.

        `admin` logs in as the admin user, which scanning and clearing the
        whole store (the CLI's cache commands) need.
        """
        return cls(
            connect_sequence_store(settings, admin),
            SegmentLayout(settings.segment_bytes),
            Counters(connect_task_store(settings, admin)),
        )

    def __init__(self, client: RedisClient, layout: SegmentLayout, counters: Counters) -> None:
        self._redis = client  # decode_responses=False: values are binary
        self.layout = layout
        self._counters = counters
        self._discard = client.register_script(DISCARD_SEGMENT_LUA)

    def key(self, j: int) -> str:
        """Name segment j in this layout."""
        return keys.segment_key(self.layout.segment_bytes, j)

    @store_call(_STORE)
    def get(self, j: int) -> bytes | None:
        """Return segment j's bytes, None if it is not stored."""
        return cast(bytes | None, self._redis.get(self.key(j)))  # decode_responses=False

    @store_call(_STORE)
    def sizes(self, js: Sequence[int]) -> list[int]:
        """Return the stored length of each segment, 0 where missing."""
        with self._redis.pipeline(transaction=False) as pipe:
            for j in js:
                pipe.strlen(self.key(j))
            return [int(n) for n in pipe.execute()]

    def missing(self, js: Sequence[int]) -> list[int]:
        """Return the segments of js that are not stored, in order."""
        return [j for j, size in zip(js, self.sizes(js), strict=True) if size == 0]

    @store_call(_STORE)
    def discard(self, j: int, segment: bytes) -> bool:
        """Delete segment j if it still holds these (damaged) bytes."""
        return bool(self._discard(keys=[self.key(j)], args=[segment]))

    @store_call(_STORE)
    def claim(self, j: int, owner: str, lease_ms: int) -> Claim:
        """Claim segment j for computing (SET NX PX), unless it is stored.

        The claim and a look at the segment go in one round trip, two
        commands (a script would add its own call to each segment's count,
        issue 9). A claim taken on a segment found stored is given back at
        once, so others see it stored, not taken. A segment stored between
        the two commands (by a worker whose claim had expired) is computed
        again and its write refused: CPU, never a wrong byte.
        """
        claim_key = keys.claim_key(self.layout.segment_bytes, j)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(claim_key, owner, nx=True, px=lease_ms)
            pipe.exists(self.key(j))
            claimed, stored = pipe.execute()
        if stored:
            if claimed:
                self._redis.delete(claim_key)
            return Claim.STORED
        return Claim.CLAIMED if claimed else Claim.TAKEN

    @store_call(_STORE)
    def store(self, j: int, segment: bytes) -> bool:
        """Store segment j unless present (SET NX); True if this call wrote it.

        Its claim is left to expire (FIBOD_CLAIM_LEASE_MS): while it lives,
        a worker of another task that listed j as missing before it was
        stored finds it claimed instead of computing it again, and learns it
        is stored when it next looks at the store. A duplicate computation
        costs CPU, never a wrong byte (segments are deterministic).
        """
        return bool(self._redis.set(self.key(j), segment, nx=True))

    def count(self, **deltas: int) -> None:
        """Add to the counters (kept in the task store: fibod/counters.py)."""
        self._counters.add(**deltas)

    def counters(self) -> dict[str, int]:
        """Return the counters, zero for those never counted."""
        return self._counters.read()

    @store_call(_STORE)
    def stats(self) -> CacheStats:
        """Scan the store and summarise its segments and claims."""
        mine: list[int] = []
        other = 0
        for key in self._redis.scan_iter(match=keys.SEGMENT_PREFIX + "*", count=_SCAN_COUNT):
            parsed = keys.parse_segment_key(key)
            if parsed is None:
                continue
            if parsed[0] == self.layout.segment_bytes:
                mine.append(parsed[1])
            else:
                other += 1
        mine.sort()
        sizes = self.sizes(mine)
        numbers = sum(self.layout.bounds(j)[1] for j, n in zip(mine, sizes, strict=True) if n)
        prefix = 0
        for j, n in zip(mine, sizes, strict=True):
            if j != prefix or not n:
                break
            prefix += 1
        claims = sum(1 for _ in self._redis.scan_iter(match=keys.CLAIM_PREFIX + "*"))
        return CacheStats(
            segment_bytes=self.layout.segment_bytes,
            segments=sum(1 for n in sizes if n),
            numbers=numbers,
            bytes=sum(sizes),
            prefix_sn=self.layout.start(prefix),
            claims=claims,
            other_layouts=other,
            counters=self.counters(),
            nodes=self.node_stats(),
        )

    @store_call(_STORE)
    def node_stats(self) -> list[NodeStats]:
        """Return keys and memory of each server (each master of a cluster)."""
        client = self._redis
        if isinstance(client, RedisCluster):
            return [
                node_stats_from_info(
                    f"{node.host}:{node.port}",
                    client.info(target_nodes=node),
                    client.dbsize(target_nodes=node),
                )
                for node in client.get_primaries()
            ]
        kwargs = client.connection_pool.connection_kwargs
        address = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return [node_stats_from_info(address, client.info(), client.dbsize())]

    @store_call(_STORE)
    def clear(self, reset_counters: bool = False) -> int:
        """Delete every segment and claim (all layouts); return how many."""
        deleted = 0
        for pattern in (keys.SEGMENT_PREFIX + "*", keys.CLAIM_PREFIX + "*"):
            deleted += self._unlink_all(self._redis.scan_iter(match=pattern, count=_SCAN_COUNT))
        if reset_counters:
            self._counters.reset()
        return deleted

    def _unlink_all(self, found: Iterable[bytes]) -> int:
        batch: list[bytes] = []
        deleted = 0
        for key in found:
            batch.append(key)
            if len(batch) >= _SCAN_COUNT:
                deleted += int(self._redis.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(self._redis.unlink(*batch))
        return deleted


def node_stats_from_info(address: str, info: dict[str, Any], keys_held: int) -> NodeStats:
    """Pick a server's memory, eviction and key figures out of its INFO."""
    return NodeStats(
        address=address,
        keys=int(keys_held),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        evicted_keys=int(info.get("evicted_keys", 0)),
    )
