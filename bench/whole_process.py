"""Time whole processes against the baselines in one run; print medians.

    .venv/bin/python bench/whole_process.py [--quick]

Each pair runs interleaved (kernel, baseline, kernel, ...) so that machine
noise hits both alike; output goes to /dev/null; peak RSS comes from
wait4(). Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
FIBOD = [PY, "-m", "fibod.cli"]
FIB_N_SCRIPT = (
    "import sys, gmpy2; n = int(sys.argv[1]); "
    "sys.stdout.buffer.write(gmpy2.fib(n).digits().encode() + b'\\n')"
)


def run_once(cmd: list[str]) -> tuple[float, int]:
    """Run cmd with stdout to /dev/null; return (seconds, peak RSS KiB)."""
    with open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return elapsed, usage.ru_maxrss


def compare(label: str, fast: list[str], base: list[str], rounds: int, base_rounds: int) -> str:
    """Run both commands interleaved; return a table row."""
    fast_t, base_t, rss = [], [], []
    for i in range(max(rounds, base_rounds)):
        if i < rounds:
            t, r = run_once(fast)
            fast_t.append(t)
            rss.append(r)
        if i < base_rounds:
            base_t.append(run_once(base)[0])
    f, b = statistics.median(fast_t), statistics.median(base_t)
    return (
        f"| {label} | {f:.3f} s ({len(fast_t)} runs) | {b:.3f} s ({len(base_t)} runs) "
        f"| **{b / f:.1f}x** | {max(rss) / 1024:.0f} MB |"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    big, mid, fib_n = (20_000, 10_000, 10**6) if quick else (100_000, 40_000, 10**7)
    base_rounds = 1 if quick else 3
    rows = [
        "| what (whole process, stdout to /dev/null) | fibod | baseline | speedup "
        "| fibod peak RSS |",
        "|---|---|---|---|---|",
        compare(
            f"`fibod seq {big}` vs gmpy2 `.digits()` loop",
            [*FIBOD, "seq", str(big)],
            [PY, str(HERE / "baselines.py"), "gmpy2", str(big)],
            7,
            base_rounds,
        ),
        compare(
            f"`fibod seq {mid}` vs CPython `str()` loop",
            [*FIBOD, "seq", str(mid)],
            [PY, str(HERE / "baselines.py"), "str", str(mid)],
            7,
            base_rounds,
        ),
        compare(
            f"`fibod fib {fib_n}` vs `gmpy2.fib(n).digits()`",
            [*FIBOD, "fib", str(fib_n)],
            [PY, "-c", FIB_N_SCRIPT, str(fib_n)],
            7,
            7,
        ),
    ]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
