"""Kernel text output against the baselines, same SN, null sink, one run.

`make bench` prints pytest-benchmark's table; the ratios are printed at
the end (median of each against the kernel's median).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from baselines import cpython_str_loop, gmpy2_digits_loop

from fibod.config import discover
from fibod.kernel import FAST

SN = discover().bench_sn
MEDIANS: dict[str, float] = {}


class NullSink:
    """A binary file that drops what it is given, like /dev/null."""

    def write(self, data: bytes | memoryview) -> int:
        return len(data)


def kernel_text(sn: int, out: NullSink) -> None:
    for block in FAST.iter_run_text(0, sn):
        out.write(block)


CASES: dict[str, Callable[[int, NullSink], None]] = {
    "fibod-kernel": kernel_text,
    "gmpy2-digits-loop": gmpy2_digits_loop,
    "cpython-str-loop": cpython_str_loop,
}


@pytest.mark.parametrize("name", list(CASES))
def test_text_output(benchmark, name: str) -> None:
    rounds = 9 if name == "fibod-kernel" else 3
    benchmark.group = f"first {SN} Fibonacci numbers as text"
    benchmark.pedantic(CASES[name], args=(SN, NullSink()), rounds=rounds, iterations=1)
    MEDIANS[name] = benchmark.stats.stats.median
