"""Which segments a task needs, and computing them under claims.

The planner is the part of a worker that knows nothing of Kafka: given
a sequence store it finds what is missing and computes the lowest
missing segment nobody else has claimed. The worker drives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from fibod import keys, lengths
from fibod.segments import SegmentLayout, encode_segment


class SegmentStore(Protocol):
    """What the planner needs from the sequence store."""

    layout: SegmentLayout

    def sizes(self, js: Sequence[int]) -> list[int]: ...

    def missing(self, js: Sequence[int]) -> list[int]: ...

    def put(self, j: int, segment: bytes) -> bool: ...

    def claim(self, j: int, owner: str, lease_ms: int) -> bool: ...

    def release(self, j: int, owner: str) -> bool: ...

    def claimed(self, js: Sequence[int]) -> list[bool]: ...

    def count(self, **deltas: int) -> None: ...


def task_segments(layout: SegmentLayout, sn: int, start: int = 0) -> list[int]:
    """Return the segments that together hold F(start)..F(start+sn-1).

    Segments cover indices from F(0), whatever task asks: a run starting
    at A shares its segments with every task that covers them.
    """
    if sn <= 0:
        return []
    return list(range(layout.index_of(start), layout.index_of(start + sn - 1) + 1))


def run_part(layout: SegmentLayout, j: int, sn: int, start: int = 0) -> tuple[int, int]:
    """Return (first index, count) of the run F(start)..F(start+sn-1) in segment j."""
    first, count = layout.bounds(j)
    lo, hi = max(first, start), min(first + count, start + sn)
    return lo, max(hi - lo, 0)


def bytes_done(layout: SegmentLayout, sn: int, present: Iterable[int], start: int = 0) -> int:
    """Count the result's text bytes that the present segments hold.

    Progress in bytes, not numbers: the last numbers of a run are the
    longest, and work grows with the square of sn.
    """
    return sum(lengths.text_bytes(*run_part(layout, j, sn, start)) for j in present)


def help_partitions(partitions: int, own: Iterable[int], missing: int) -> list[int]:
    """Pick partitions for help messages: those of other workers.

    One message per partition not assigned to this worker, and no more
    than the segments the owner will not compute itself (missing - 1).
    """
    mine = set(own)
    others = [p for p in range(partitions) if p not in mine]
    return others[: max(0, missing - 1)]


@dataclass(frozen=True)
class Step:
    """What one call of `SegmentBuilder.build_one` did."""

    j: int
    #: True if this worker encoded the segment (False: found it stored).
    computed: bool
    #: True if our SET NX wrote it (False: an expired claim let another in).
    stored: bool


class SegmentBuilder:
    """Compute missing segments, each under a claim, lowest first."""

    def __init__(
        self,
        store: SegmentStore,
        owner: str,
        lease_ms: int,
        encode: Callable[[int, int], bytes] = encode_segment,
    ) -> None:
        self._store = store
        self._owner = owner
        self._lease_ms = lease_ms
        self._encode = encode

    def build_one(self, pending: Sequence[int]) -> Step | None:
        """Claim and compute the lowest unclaimed segment of `pending`.

        Return None when every pending segment is claimed by others.
        """
        store = self._store
        for j, taken in zip(pending, store.claimed(pending), strict=True):
            if taken or not store.claim(j, self._owner, self._lease_ms):
                continue
            try:
                # Re-check under the claim: another worker may have stored
                # it and released its claim since `pending` was read.
                if store.sizes([j])[0]:
                    return Step(j, computed=False, stored=False)
                segment = self._encode(*store.layout.bounds(j))
                stored = store.put(j, segment)
                field = keys.STAT_SEGMENTS_COMPUTED if stored else keys.STAT_SEGMENTS_DUPLICATE
                store.count(**{field: 1})
                return Step(j, computed=True, stored=stored)
            finally:
                store.release(j, self._owner)
        return None
