"""The kernel's Python face: the Cython kernel and its plain-Python twin.

Both implement the same `Kernel` interface, so every test runs against
both; `get_kernel()` returns the fast one, the twin exists for cross-checks.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Protocol

from fibod import _fastfib

#: Smallest output block; text is written in blocks at least this large.
MIN_CHUNK_BYTES = 64 * 1024


class Kernel(Protocol):
    """What the rest of fibod needs from a compute kernel."""

    name: str

    def fib(self, n: int) -> int:
        """Return F(n)."""

    def fib_pair(self, n: int) -> tuple[int, int]:
        """Return (F(n), F(n+1))."""

    def encode_payload(self, start: int, count: int) -> tuple[bytes, int]:
        """Return the segment payload of F(start..start+count-1), total digits."""

    def check_payload(self, payload: bytes | memoryview, count: int) -> int:
        """Validate a payload; return its total digits or raise ValueError."""

    def prefix_digits(self, payload: bytes | memoryview, count: int) -> int:
        """Return the total digits of a checked payload's first `count` numbers."""

    def iter_run_text(
        self, start: int, count: int, sep: bytes = b" ", chunk_bytes: int = 1 << 20
    ) -> Iterator[memoryview]:
        """Yield F(start..start+count-1) as text blocks of about chunk_bytes."""

    def payload_text(self, payload: bytes | memoryview, count: int, sep: bytes = b" ") -> bytes:
        """Return a checked payload's first `count` numbers as one bytes."""


class FastKernel:
    """The Cython + gmpy2 kernel (packed-BCD runs, vectorised rendering)."""

    name = "cython"

    def fib(self, n: int) -> int:
        return _fastfib.fib(n)

    def fib_pair(self, n: int) -> tuple[int, int]:
        return _fastfib.fib_pair(n)

    def encode_payload(self, start: int, count: int) -> tuple[bytes, int]:
        return _fastfib.FibRun(start, count).encode_payload()

    def check_payload(self, payload: bytes | memoryview, count: int) -> int:
        return _fastfib.check_payload(payload, count)

    def prefix_digits(self, payload: bytes | memoryview, count: int) -> int:
        return _fastfib.prefix_digits(payload, count)

    def iter_run_text(
        self, start: int, count: int, sep: bytes = b" ", chunk_bytes: int = 1 << 20
    ) -> Iterator[memoryview]:
        run = _fastfib.FibRun(start, count)
        # One buffer, reused: the consumer must finish with a block before
        # asking for the next (writers do), which keeps memory flat.
        buf = bytearray(max(chunk_bytes, MIN_CHUNK_BYTES, run.max_digits + 1))
        view = memoryview(buf)
        sep_byte = sep[0]
        while run.remaining:
            n = run.render_into(buf, sep_byte)
            yield view[:n]

    def payload_text(self, payload: bytes | memoryview, count: int, sep: bytes = b" ") -> bytes:
        # sized exactly and rendered in one call: a server can send it as is
        return _fastfib.payload_text(payload, count, sep[0])


class PlainKernel:
    """The plain-Python twin: same results from Python ints and str()."""

    name = "python"

    def fib(self, n: int) -> int:
        return self.fib_pair(n)[0]

    def fib_pair(self, n: int) -> tuple[int, int]:
        if n < 0:
            raise ValueError("n must be >= 0")
        a, b = 0, 1  # F(k), F(k+1) with k built from n's bits, top first
        for bit in bin(n)[2:]:
            a, b = a * (2 * b - a), a * a + b * b
            if bit == "1":
                a, b = b, a + b
        return a, b

    def encode_payload(self, start: int, count: int) -> tuple[bytes, int]:
        if start < 0 or count < 0:
            raise ValueError("start and count must be >= 0")
        a, b = self.fib_pair(start)
        parts: list[bytes] = []
        total = 0
        for _ in range(count):
            digits = _int_digits(a)
            padded = digits if len(digits) % 2 == 0 else "0" + digits
            parts.append(len(digits).to_bytes(4, "little") + bytes.fromhex(padded))
            total += len(digits)
            a, b = b, a + b
        return b"".join(parts), total

    def check_payload(self, payload: bytes | memoryview, count: int) -> int:
        data = bytes(payload)
        pos = total = 0
        for i in range(count):
            if pos + 4 > len(data):
                raise ValueError(f"number {i} of {count}: length prefix truncated at byte {pos}")
            d = int.from_bytes(data[pos : pos + 4], "little")
            nb = (d + 1) // 2
            if d == 0:
                raise ValueError(f"number {i} of {count}: zero digit count at byte {pos}")
            if pos + 4 + nb > len(data):
                raise ValueError(
                    f"number {i} of {count}: {d} digits need {nb} bytes, "
                    f"only {len(data) - pos - 4} left"
                )
            text = data[pos + 4 : pos + 4 + nb].hex()
            if not text.isdigit():
                raise ValueError(f"number {i} of {count}: a nibble is not a decimal digit")
            if d % 2 and text[0] != "0":
                raise ValueError(f"number {i} of {count}: nonzero pad nibble")
            if d > 1 and text[-d] == "0":
                raise ValueError(f"number {i} of {count}: leading zero digit")
            pos += 4 + nb
            total += d
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} bytes after the last of {count} numbers")
        return total

    def prefix_digits(self, payload: bytes | memoryview, count: int) -> int:
        data = bytes(payload)
        pos = total = 0
        for _ in range(count):
            if pos + 4 > len(data):
                raise ValueError(f"payload holds fewer than {count} numbers")
            d = int.from_bytes(data[pos : pos + 4], "little")
            total += d
            pos += 4 + (d + 1) // 2
        return total

    def iter_run_text(
        self, start: int, count: int, sep: bytes = b" ", chunk_bytes: int = 1 << 20
    ) -> Iterator[memoryview]:
        a, b = self.fib_pair(start)
        block: list[bytes] = []
        size = 0
        for _ in range(count):
            item = _int_digits(a).encode() + sep
            block.append(item)
            size += len(item)
            if size >= chunk_bytes:
                yield memoryview(b"".join(block))
                block, size = [], 0
            a, b = b, a + b
        if block:
            yield memoryview(b"".join(block))

    def payload_text(self, payload: bytes | memoryview, count: int, sep: bytes = b" ") -> bytes:
        data = bytes(payload)
        pos = 0
        out: list[bytes] = []
        for _ in range(count):
            d = int.from_bytes(data[pos : pos + 4], "little")
            nb = (d + 1) // 2
            out.append(data[pos + 4 : pos + 4 + nb].hex()[-d:].encode() + sep)
            pos += 4 + nb
        return b"".join(out)


def _int_digits(value: int) -> str:
    """Decimal digits of a non-negative int of any size, by plain str()."""
    if sys.get_int_max_str_digits():
        sys.set_int_max_str_digits(0)  # the twin must print numbers of any size
    return str(int(value))


FAST = FastKernel()
PLAIN = PlainKernel()


def get_kernel() -> Kernel:
    """Return the fast kernel; the plain twin is `PLAIN`."""
    return FAST
