"""Which segments a task needs, and computing them under claims.

The planner is the part of a worker that knows nothing of Kafka: given
a sequence store it computes a segment handed to it under a claim, unless
the segment is stored or another worker holds its claim. The worker
drives it; fibod/worklist.py hands the segments out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Protocol

from fibod import keys, lengths
from fibod.segments import SegmentLayout, encode_segment


class Claim(IntEnum):
    """What claiming a segment found."""

    TAKEN = 0  # another worker holds the claim: it computes the segment
    CLAIMED = 1  # ours now: compute it and store it
    STORED = 2  # stored since it was handed out: nothing to compute


class SegmentStore(Protocol):
    """What the planner needs from the sequence store."""

    layout: SegmentLayout

    def missing(self, js: Sequence[int]) -> list[int]: ...

    def claim(self, j: int, owner: str, lease_ms: int) -> Claim: ...

    def store(self, j: int, segment: bytes) -> bool: ...

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


class SegmentBuilder:
    """Compute segments handed out to this worker, each under a claim.

    Counts what it did locally; the worker flushes the counts once per
    unit, not once per segment.
    """

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
        self.tally: Counter[str] = Counter()

    def build(self, j: int) -> bool:
        """Get segment j stored unless another worker holds its claim.

        Returns False when another holds it (it computes the segment). A
        segment stored since it was handed out (two tasks listed it, and
        the claim of whoever stored it has expired) is not computed again.
        """
        found = self._store.claim(j, self._owner, self._lease_ms)
        if found is Claim.TAKEN:
            return False
        if found is Claim.CLAIMED:
            segment = self._encode(*self._store.layout.bounds(j))
            stored = self._store.store(j, segment)
            self.tally[keys.STAT_SEGMENTS_COMPUTED if stored else keys.STAT_SEGMENTS_DUPLICATE] += 1
        return True

    def flush(self) -> None:
        """Add what was counted since the last flush to the store's counters."""
        if self.tally:
            self._store.count(**self.tally)
            self.tally.clear()
