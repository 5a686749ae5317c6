"""Independent references for what fibod computes and serves.

Nothing here uses fibod's kernel or segment code, so a bug there cannot
hide behind its own output: numbers come from plain Python int additions
(printed with str()) or from gmpy2 (printed with `.digits()`), and stored
segments are decoded by hand from docs/FORMAT.md (packed-BCD bytes are
hex digits). Unit and integration tests import them the same way:
`from tests.reference import ...`.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import threading
from dataclasses import dataclass

import gmpy2

#: Offsets of docs/FORMAT.md: the header is 32 bytes, the trailer 8.
HEADER_BYTES = 32
TRAILER_BYTES = 8

# Numbers here run to tens of thousands of digits (F(20,000) alone has
# 4,180): lift CPython's limit on int <-> decimal text once, for every caller.
sys.set_int_max_str_digits(0)

_decimals: list[str] = []  # str(F(0)), str(F(1)), ... computed so far
_next_pair = [0, 1]  # F(len(_decimals)), F(len(_decimals) + 1)
_decimals_lock = threading.Lock()


def reference_run(start: int, count: int) -> list[int]:
    """Return F(start..start+count-1) by plain int additions from F(0)."""
    a, b = 0, 1
    for _ in range(start):
        a, b = b, a + b
    out = []
    for _ in range(count):
        out.append(a)
        a, b = b, a + b
    return out


def gmpy2_run(start: int, count: int) -> list[int]:
    """Return F(start..start+count-1) from gmpy2: a jump, then additions.

    Cheaper than `reference_run` far from F(0), and just as independent.
    """
    b, a = gmpy2.fib2(start + 1)  # (F(start+1), F(start))
    out = []
    for _ in range(count):
        out.append(int(a))
        a, b = b, a + b
    return out


def _decimal_strings(stop: int) -> list[str]:
    """Return str(F(0))..str(F(stop-1)); computed once, kept for later calls."""
    with _decimals_lock:
        if len(_decimals) < stop:
            a, b = _next_pair
            for _ in range(stop - len(_decimals)):
                _decimals.append(str(a))
                a, b = b, a + b
            _next_pair[:] = [a, b]
        return _decimals[:stop]


def reference_text(start: int, count: int, sep: str = " ") -> bytes:
    """Return F(start..start+count-1) as the wire text: each number then sep."""
    numbers = _decimal_strings(start + count)[start:]
    return "".join(n + sep for n in numbers).encode()


def gmpy2_text(start: int, count: int, sep: str = " ") -> bytes:
    """Return F(start..start+count-1) as wire text, from gmpy2 and `.digits()`.

    For runs far from F(0), whose numbers str() would take seconds each.
    """
    b, a = gmpy2.fib2(start + 1)  # (F(start+1), F(start))
    parts = []
    for _ in range(count):
        parts.append(a.digits() + sep)
        a, b = b, a + b
    return "".join(parts).encode()


@dataclass(frozen=True)
class Digest:
    """F(0)..F(sn-1) as text, each followed by a space: its hash and lengths."""

    sn: int
    size: int
    sha256: str
    #: prefix_bytes[n] is the text length of F(0)..F(n-1), for n <= sn.
    prefix_bytes: tuple[int, ...]


class _DigestRun:
    """A gmpy2 run from F(0), hashed as it goes; longer digests extend it."""

    def __init__(self) -> None:
        self.hasher = hashlib.sha256()
        self.prefix = [0]
        self.a, self.b = gmpy2.mpz(0), gmpy2.mpz(1)

    def digest(self, sn: int) -> Digest:
        """Extend the run to F(sn-1) and hash it."""
        for _ in range(sn - (len(self.prefix) - 1)):
            text = self.a.digits().encode() + b" "
            self.hasher.update(text)
            self.prefix.append(self.prefix[-1] + len(text))
            self.a, self.b = self.b, self.a + self.b
        return Digest(sn, self.prefix[sn], self.hasher.hexdigest(), tuple(self.prefix))


_digest_run = _DigestRun()
_digest_lock = threading.Lock()


@functools.cache
def reference_digest(sn: int) -> Digest:
    """Hash F(0)..F(sn-1) as text, from gmpy2 additions and `.digits()`.

    For sequences too long to hold as bytes (hundreds of MB). One run
    serves every call asking for more than the last (the integration tests
    ask for 60,000, the CLI test for 100,000); a shorter one starts anew.
    """
    with _digest_lock:
        if sn < len(_digest_run.prefix) - 1:
            return _DigestRun().digest(sn)
        return _digest_run.digest(sn)


def reference_prefix(size: int) -> bytes:
    """Return the first `size` bytes of the text of F(0), F(1), ..., from gmpy2."""
    pieces, total = [], 0
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)
    while total < size:
        piece = a.digits().encode() + b" "
        pieces.append(piece)
        total += len(piece)
        a, b = b, a + b
    return b"".join(pieces)[:size]


def reference_text_bytes(sn: int, within: int = 20_000) -> int:
    """Return the text length of F(0)..F(sn-1) with separators.

    `within` names the longest sequence the caller needs, so one cached
    digest serves every shorter length.
    """
    return reference_digest(max(sn, within)).prefix_bytes[sn]


def segment_numbers_by_hand(segment: bytes) -> list[int]:
    """Decode a stored segment's numbers from docs/FORMAT.md, by hand.

    Checks only what decoding needs (magic, lengths); the numbers are
    read as hex digits, which is what packed BCD is.
    """
    assert segment[:4] == b"FIBS", segment[:4]
    if sys.get_int_max_str_digits():
        sys.set_int_max_str_digits(0)  # numbers of any size, whichever test runs first
    count = int.from_bytes(segment[16:20], "little")
    payload_bytes = int.from_bytes(segment[20:24], "little")
    assert len(segment) == HEADER_BYTES + payload_bytes + TRAILER_BYTES
    out: list[int] = []
    pos, end = HEADER_BYTES, HEADER_BYTES + payload_bytes
    while pos < end:
        digits = int.from_bytes(segment[pos : pos + 4], "little")
        size = (digits + 1) // 2
        text = segment[pos + 4 : pos + 4 + size].hex()
        out.append(int(text[len(text) - digits :]))
        pos += 4 + size
    assert len(out) == count, (len(out), count)
    return out


def binary_body_numbers(body: bytes) -> list[int]:
    """Decode a `format=binary` body (segments back to back, F(0) first) by hand."""
    numbers: list[int] = []
    pos = 0
    while pos < len(body):
        payload_bytes = int.from_bytes(body[pos + 20 : pos + 24], "little")
        end = pos + HEADER_BYTES + payload_bytes + TRAILER_BYTES
        segment = body[pos:end]
        assert int.from_bytes(segment[8:16], "little") == len(numbers), "a gap between segments"
        numbers += segment_numbers_by_hand(segment)
        pos = end
    return numbers
