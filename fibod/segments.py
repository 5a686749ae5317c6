"""The binary segment format and the layout of segments over indices.

A segment holds the run F(start)..F(start+count-1) in packed BCD behind a
32-byte header and ahead of an XXH3-64 checksum; docs/FORMAT.md gives
the byte layout. `SegmentLayout` fixes which index ranges segments cover,
so that every worker and reader agrees on segment boundaries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import isqrt

import xxhash

from fibod.errors import SegmentError
from fibod.kernel import Kernel, get_kernel

MAGIC = b"FIBS"
FORMAT_VERSION = 1
ENCODING_PACKED_BCD = 1
HEADER = struct.Struct("<4sBBHQIIQ")  # magic, version, encoding, reserved,
#                                       start, count, payload bytes, total digits
TRAILER = struct.Struct("<Q")  # XXH3-64 of header + payload
HEADER_BYTES = HEADER.size
OVERHEAD_BYTES = HEADER.size + TRAILER.size
# 10**8 * log10(golden ratio), rounded: the digits of F(n) grow by this per index.
_LOG10_PHI_E8 = 20_898_764


@dataclass(frozen=True)
class SegmentHeader:
    """What a segment's header says about it."""

    start: int
    count: int
    payload_bytes: int
    total_digits: int

    @property
    def text_bytes(self) -> int:
        """Length of the segment as text, one separator after each number."""
        return self.total_digits + self.count


def encode_segment(start: int, count: int, kernel: Kernel | None = None) -> bytes:
    """Compute F(start..start+count-1) and return it as a segment."""
    payload, total_digits = (kernel or get_kernel()).encode_payload(start, count)
    head = HEADER.pack(
        MAGIC, FORMAT_VERSION, ENCODING_PACKED_BCD, 0, start, count, len(payload), total_digits
    )
    hasher = xxhash.xxh3_64(head)
    hasher.update(payload)
    return b"".join((head, payload, TRAILER.pack(hasher.intdigest())))


def read_header(segment: bytes | memoryview) -> SegmentHeader:
    """Parse and check the header and total length, not the payload."""
    if len(segment) < OVERHEAD_BYTES:
        raise SegmentError(f"segment truncated: {len(segment)} bytes, header alone is 40")
    magic, version, encoding, _, start, count, payload_bytes, digits = HEADER.unpack_from(segment)
    if magic != MAGIC:
        raise SegmentError(f"not a fibod segment: magic {bytes(magic)!r}")
    if version != FORMAT_VERSION:
        raise SegmentError(f"unsupported segment format version {version}")
    if encoding != ENCODING_PACKED_BCD:
        raise SegmentError(f"unknown number encoding {encoding}")
    expected = OVERHEAD_BYTES + payload_bytes
    if len(segment) != expected:
        what = "truncated" if len(segment) < expected else "has trailing bytes"
        raise SegmentError(f"segment {what}: expected {expected} bytes, got {len(segment)}")
    return SegmentHeader(start, count, payload_bytes, digits)


def payload_of(segment: bytes | memoryview, header: SegmentHeader) -> memoryview:
    """Return the payload bytes of a segment without copying."""
    return memoryview(segment)[HEADER_BYTES : HEADER_BYTES + header.payload_bytes]


def validate_segment(segment: bytes | memoryview, kernel: Kernel | None = None) -> SegmentHeader:
    """Check header, checksum and every number; return the header.

    Raises SegmentError naming what is wrong, so a damaged segment is
    never rendered as wrong digits.
    """
    header = read_header(segment)
    view = memoryview(segment)
    body_end = HEADER_BYTES + header.payload_bytes
    (stored,) = TRAILER.unpack_from(view, body_end)
    actual = xxhash.xxh3_64_intdigest(view[:body_end])
    if stored != actual:
        raise SegmentError(
            f"segment checksum mismatch for F({header.start})..: stored {stored:016x}, "
            f"computed {actual:016x}"
        )
    try:
        digits = (kernel or get_kernel()).check_payload(payload_of(segment, header), header.count)
    except ValueError as exc:
        raise SegmentError(f"segment payload invalid: {exc}") from None
    if digits != header.total_digits:
        raise SegmentError(f"header says {header.total_digits} digits, payload has {digits}")
    return header


class SegmentLayout:
    """Which index range each segment covers, for a target segment size.

    Segment j starts at isqrt(j * c) + j, where c makes the packed-BCD
    bytes of each segment about `segment_bytes` (F(n) has ~0.209 n digits,
    so the bytes of F(0..n-1) grow as n**2). Boundaries depend only on
    `segment_bytes`, which is part of every segment key.
    """

    def __init__(self, segment_bytes: int) -> None:
        if segment_bytes < 64:
            raise ValueError("segment_bytes must be at least 64")
        self.segment_bytes = segment_bytes
        self._c = segment_bytes * 4 * 10**8 // _LOG10_PHI_E8

    def start(self, j: int) -> int:
        """First index covered by segment j."""
        return isqrt(j * self._c) + j

    def bounds(self, j: int) -> tuple[int, int]:
        """(start, count) of segment j."""
        first = self.start(j)
        return first, self.start(j + 1) - first

    def index_of(self, n: int) -> int:
        """The segment that holds index n."""
        lo, hi = 0, n  # start(j) >= j, so the answer is at most n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.start(mid) <= n:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def covering(self, sn: int) -> range:
        """Segment numbers that together hold F(0)..F(sn-1)."""
        if sn <= 0:
            return range(0)
        return range(self.index_of(sn - 1) + 1)
