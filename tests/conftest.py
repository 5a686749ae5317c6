"""Fixtures shared by the unit tests (no servers)."""

from __future__ import annotations

import sys

import pytest

from fibod.kernel import FAST, PLAIN, Kernel

sys.set_int_max_str_digits(0)  # references print numbers of any size


@pytest.fixture(params=[FAST, PLAIN], ids=lambda k: k.name)
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Every kernel test runs against the Cython kernel and its twin."""
    return request.param


def reference_run(start: int, count: int) -> list[int]:
    """F(start..start+count-1) by plain iteration from F(0): independent of fibod."""
    a, b = 0, 1
    for _ in range(start):
        a, b = b, a + b
    out = []
    for _ in range(count):
        out.append(a)
        a, b = b, a + b
    return out


def reference_text(start: int, count: int, sep: str = " ") -> bytes:
    """The expected text of a run: decimal numbers each followed by sep."""
    return "".join(f"{v}{sep}" for v in reference_run(start, count)).encode()
