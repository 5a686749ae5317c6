"""Where each byte of a ready result lies: which segment, number and digit.

A ready body is the status byte 0x00, then the run F(start)..F(start+sn-1)
in one format: as text (each number and a separator), or as the stored
segments that cover it, whole (`format=binary`). The length of every
part is known from the indices alone (fibod/lengths.py), so any byte
range maps to the segments it touches, and within a text segment to a
number and a digit, without generating anything before it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from fibod import lengths
from fibod.planner import run_part, task_segments
from fibod.protocol import FORMATS
from fibod.segments import OVERHEAD_BYTES, SegmentLayout

#: Bytes before the run in a ready body: the status byte.
STATUS_BYTES = 1
#: Most bytes of text rendered into one buffer: a part's buffer comes
#: from the heap (below MALLOC_MMAP_THRESHOLD_, ops/supervisor/fetch.conf)
#: and reuses pages a sent part left, already faulted in. Rendering
#: sn=40,000 runs 6.5x as fast as with one fresh mmap per ~4 MB piece
#: (bench/render_memory.py), and a slow reader pins at most one part.
RENDER_PART_BYTES = 512 * 1024
#: Digits F(m) gains per index: log10 of the golden ratio.
_SLOPE = float(lengths.LOG10_PHI)


def text_parts(
    first: int, count: int, sep_bytes: int = 1, limit: int = RENDER_PART_BYTES
) -> Iterator[tuple[int, int]]:
    """Split F(first)..F(first+count-1) into (first, count) runs of at most `limit` bytes of text.

    F(m) has about LOG10_PHI * m digits, so a run of k numbers from F(n)
    takes about k * (digits(n) + sep) + LOG10_PHI * k**2 / 2 bytes: solved
    for k, then checked exactly. A number longer than `limit` is a run of
    its own.
    """
    end = first + count
    n = first
    while n < end:
        b = lengths.digits(n) + sep_bytes
        k = max(1, min(end - n, int((math.sqrt(b * b + 2 * _SLOPE * limit) - b) / _SLOPE)))
        while k > 1 and lengths.total_digits(n, k) + sep_bytes * k > limit:
            k -= 1 + k // 64  # stays >= 1: k // 64 < k - 1 for any k >= 2
        yield n, k
        n += k


@dataclass(frozen=True)
class Piece:
    """What one segment contributes to a body or to a range of it.

    Text: render `count` numbers from F(first), drop `skip` bytes, send
    `size`. Binary: send `size` bytes of the stored segment from `skip`.
    """

    j: int
    first: int
    count: int
    skip: int
    size: int


class ResultBody:
    """The byte layout of one ready body: 0x00, then the run in a format."""

    def __init__(self, layout: SegmentLayout, start: int, sn: int, fmt: str) -> None:
        self.layout = layout
        self.start = start
        self.sn = sn
        self.fmt = fmt
        self.sep_bytes = len(FORMATS[fmt])
        self.js = task_segments(layout, sn, start)
        #: ends[i] is the run's bytes up to the end of segment js[i].
        self._ends = list(accumulate(self._segment_bytes(j) for j in self.js))

    @property
    def length(self) -> int:
        """Bytes of the whole body, status byte included."""
        return STATUS_BYTES + (self._ends[-1] if self._ends else 0)

    def pieces(self, first: int = STATUS_BYTES, last: int | None = None) -> Iterator[Piece]:
        """Yield the pieces holding body bytes first..last (inclusive, after the status byte)."""
        end = self.length - 1 if last is None else last
        offset = max(first, STATUS_BYTES) - STATUS_BYTES  # in the run, after 0x00
        stop = end - STATUS_BYTES + 1
        i = bisect.bisect_right(self._ends, offset)
        while offset < stop and i < len(self.js):
            seg_begin = self._ends[i - 1] if i else 0
            local, upto = offset - seg_begin, min(self._ends[i], stop) - seg_begin
            yield self._piece(self.js[i], local, upto)
            offset = seg_begin + upto
            i += 1

    def _segment_bytes(self, j: int) -> int:
        if self.fmt == "binary":
            return OVERHEAD_BYTES + lengths.payload_bytes(*self.layout.bounds(j))
        lo, count = run_part(self.layout, j, self.sn, self.start)
        return lengths.total_digits(lo, count) + self.sep_bytes * count

    def _piece(self, j: int, local: int, upto: int) -> Piece:
        """Segment j's bytes local..upto-1 (offsets in its share of the run)."""
        if self.fmt == "binary":
            return Piece(j, 0, 0, local, upto - local)
        lo, count = run_part(self.layout, j, self.sn, self.start)
        first, skip = lengths.number_at(lo, count, local, self.sep_bytes)
        last, _ = lengths.number_at(lo, count, upto - 1, self.sep_bytes)
        return Piece(j, first, last - first + 1, skip, upto - local)
