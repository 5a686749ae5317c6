"""Where `fibod fib N` spends its time; print Markdown for docs/BENCHMARKS.md.

    .venv/bin/python bench/fib_profile.py [--n 10000000] [--rounds 7]

Every round times, one after the other (so machine noise hits all alike):
fibod's fast doubling in-process (`FAST.fib(n)`), `gmpy2.fib(n)`, the radix
conversion of the result (`.digits()`, the call both `fibod fib` and the
gmpy2 baseline make), then whole processes with stdout to /dev/null:
`fibod fib N`, the gmpy2 baseline of bench/whole_process.py, and both
with N = 1 (start-up: interpreter, imports, settings). Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import gmpy2
from whole_process import FIB_N_SCRIPT, FIBOD, PY, run_once

from fibod.kernel import FAST


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**7)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n = args.n
    result = gmpy2.mpz(FAST.fib(n))
    if result != gmpy2.fib(n):
        raise SystemExit(f"FAST.fib({n}) differs from gmpy2.fib({n})")
    steps: dict[str, Callable[[], float]] = {
        "fibod fast doubling, `FAST.fib(n)`": lambda: timed(lambda: FAST.fib(n)),
        "`gmpy2.fib(n)`": lambda: timed(lambda: gmpy2.fib(n)),
        "radix conversion, `.digits()`": lambda: timed(result.digits),
        f"whole process `fibod fib {n}`": lambda: run_once([*FIBOD, "fib", str(n)])[0],
        "whole process, gmpy2 baseline": lambda: run_once([PY, "-c", FIB_N_SCRIPT, str(n)])[0],
        "start-up, `fibod fib 1`": lambda: run_once([*FIBOD, "fib", "1"])[0],
        "start-up, gmpy2 baseline with n = 1": lambda: run_once([PY, "-c", FIB_N_SCRIPT, "1"])[0],
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(step())
    print(f"n = {n:,}, medians of {args.rounds} rounds (steps interleaved)\n")
    print("| step | median |\n|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} s |")


if __name__ == "__main__":
    sys.exit(main())
