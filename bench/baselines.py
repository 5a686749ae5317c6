"""The baselines fibod is measured against: straightforward loops.

Run as a script to time them as whole processes:
    python bench/baselines.py gmpy2 100000 > /dev/null
    python bench/baselines.py str 40000 > /dev/null
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import gmpy2


def gmpy2_digits_loop(sn: int, out: BinaryIO) -> None:
    """F(0..sn-1) by gmpy2 addition, each printed with .digits()."""
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)
    for _ in range(sn):
        out.write(a.digits().encode() + b" ")
        a, b = b, a + b


def cpython_str_loop(sn: int, out: BinaryIO) -> None:
    """F(0..sn-1) by plain int addition, each printed with str()."""
    sys.set_int_max_str_digits(0)
    a, b = 0, 1
    for _ in range(sn):
        out.write(str(a).encode() + b" ")
        a, b = b, a + b


LOOPS = {"gmpy2": gmpy2_digits_loop, "str": cpython_str_loop}

if __name__ == "__main__":
    name, sn = sys.argv[1], int(sys.argv[2])
    LOOPS[name](sn, sys.stdout.buffer)
    sys.stdout.buffer.flush()
