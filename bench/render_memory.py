"""Render segments as the fetch app does, and as it did; print the ratios.

    .venv/bin/python bench/render_memory.py [sn] [rounds]

No stack needed. Each setting runs in its own child process (glibc reads
MALLOC_* once, at start): the segments covering F(0)..F(sn-1) are
encoded once, then each round renders every one into text and drops it,
as a stream does. The ways:

- baseline, whole pieces: one buffer per segment's piece (~4 MB) with
  MALLOC_MMAP_THRESHOLD_=1 MB, the fetch app until 2026-11-30: every
  piece is a fresh mmap, so its first touch faults every page in;
- parts, the fetch app's way now: pieces rendered in parts of at most
  RENDER_PART_BYTES (fibod/offsets.py), with ops/supervisor/fetch.conf's
  malloc settings (two arenas, buffers up to 4 MB from the heap, 8 MB kept
  at a heap's top), so a part reuses the heap pages the one before it left;
- heap reuse, whole pieces: one arena, buffers up to 16 MB from the heap
  and used again. Tried on 2026-11-29 and reverted: a slow reader pins
  the heap, and a fetch's peak RSS grew 50 MB in a CI run
  (docs/BENCHMARKS.md).

Prints the median seconds per round of each, their ratio, and each
child's peak RSS (VmHWM).
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: name: (malloc settings, render in parts?)
WAYS: dict[str, tuple[dict[str, str], bool]] = {
    "baseline, whole pieces": ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, False),
    "parts (the fetch app now)": (
        {
            "MALLOC_ARENA_MAX": "2",
            "MALLOC_MMAP_THRESHOLD_": "4194304",
            "MALLOC_TRIM_THRESHOLD_": "8388608",
        },
        True,
    ),
    "heap reuse, whole pieces (reverted)": (
        {
            "MALLOC_ARENA_MAX": "1",
            "MALLOC_MMAP_THRESHOLD_": "16777216",
            "MALLOC_TRIM_THRESHOLD_": "16777216",
        },
        False,
    ),
}


def child(sn: int, rounds: int, in_parts: bool) -> None:
    """Render sn's segments `rounds` times; print seconds per round, then VmHWM."""
    from fibod import lengths
    from fibod.kernel import get_kernel
    from fibod.offsets import text_parts
    from fibod.segments import SegmentLayout, encode_segment, payload_of, read_header

    kernel = get_kernel()
    layout = SegmentLayout(2 << 20)
    segments = [encode_segment(*layout.bounds(j), kernel) for j in layout.covering(sn)]
    headers = [read_header(s) for s in segments]
    for _ in range(rounds):
        started = time.perf_counter()
        rendered = 0
        for segment, header in zip(segments, headers, strict=True):
            payload = payload_of(segment, header)
            runs = (
                text_parts(header.start, header.count)
                if in_parts
                else [(header.start, header.count)]
            )
            offset = 0
            for first, count in runs:
                text = kernel.payload_text(payload[offset:], count)
                offset += lengths.payload_bytes(first, count)
                rendered += len(text)
                del text  # gone before the next one, as once a stream has sent it
        print(f"round {time.perf_counter() - started:.6f} {rendered}")
    peak = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    print("peak", peak.group(1) if peak else 0)


def measure(env: dict[str, str], in_parts: bool, sn: int, rounds: int) -> tuple[float, int, int]:
    """Run a child with env added; return (median s per round, bytes per round, peak KiB)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(sn), str(rounds), str(int(in_parts))],
        env=dict(os.environ) | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rounds_s = [float(line.split()[1]) for line in out if line.startswith("round")]
    size = int(next(line for line in out if line.startswith("round")).split()[2])
    peak = int(next(line for line in out if line.startswith("peak")).split()[1])
    return statistics.median(rounds_s), size, peak


def main() -> None:
    sn = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in WAYS}
    for _ in range(3):  # interleaved: the machine's noise falls on each
        for name, (env, in_parts) in WAYS.items():
            results[name].append(measure(env, in_parts, sn, rounds))
    print(f"| rendering sn={sn:,} as text, piece by piece | median s per round | GB/s | peak RSS |")
    print("|---|---|---|---|")
    medians = {}
    for name, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        medians[name] = seconds
        size, peak = runs[0][1], max(r[2] for r in runs)
        print(f"| {name} | {seconds:.3f} | {size / seconds / 1e9:.2f} | {peak / 1024:.0f} MB |")
    baseline = medians["baseline, whole pieces"]
    for name, seconds in medians.items():
        print(f"{name}: **{baseline / seconds:.1f}x** the baseline's speed")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1")
    else:
        main()
