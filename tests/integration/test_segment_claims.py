"""Segment claims on the real sequence store, and its in-memory twin agreeing.

A claim is refused for a segment already stored (a worker whose lease ran
out must not compute it again), and a claim found on a stored segment is
given back, so nobody waits on it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from fibod import keys
from fibod.planner import Claim
from fibod.segments import SegmentLayout
from fibod.sequences import SequenceStore
from fibod.testing import MemorySequenceStore

#: Far past any sn the stack accepts: no worker touches these segments.
FAR_SEGMENT = 10_000_000


@pytest.fixture
def far_j(sequence_redis: redis.Redis, layout: SegmentLayout) -> Iterator[int]:
    """A segment index nobody else uses; its keys are removed after the test."""
    j = FAR_SEGMENT + secrets.randbelow(1_000_000)
    yield j
    names = (keys.segment_key(layout.segment_bytes, j), keys.claim_key(layout.segment_bytes, j))
    sequence_redis.delete(*names)


@pytest.mark.parametrize("backend", ["redis", "memory"])
def test_a_claim_is_taken_once_and_refused_for_a_stored_segment(
    backend: str, sequence_store: SequenceStore, sequence_redis, layout, far_j: int
) -> None:
    store = sequence_store if backend == "redis" else MemorySequenceStore(layout)
    claim_name = keys.claim_key(layout.segment_bytes, far_j)
    # given nothing stored: the first claim wins, the second finds it taken
    assert store.claim(far_j, "worker-a", 60_000) is Claim.CLAIMED
    assert store.claim(far_j, "worker-b", 60_000) is Claim.TAKEN
    if backend == "redis":
        assert sequence_redis.get(claim_name) == b"worker-a"
        assert 0 < sequence_redis.pttl(claim_name) <= 60_000
    # when the segment is stored (its claim still held): any claim reports it stored
    segment = b"\x01" * 64
    assert store.store(far_j, segment)
    assert store.claim(far_j, "worker-b", 60_000) is Claim.STORED
    # when the claim is gone (expired, here deleted): a claim is refused as stored,
    # and the claim it took on the way is given back at once
    if backend == "redis":
        sequence_redis.delete(claim_name)
    else:
        assert isinstance(store, MemorySequenceStore)
        del store.claims[far_j]
    assert store.claim(far_j, "worker-c", 60_000) is Claim.STORED
    if backend == "redis":
        assert sequence_redis.exists(claim_name) == 0
        assert sequence_redis.get(keys.segment_key(layout.segment_bytes, far_j)) == segment
