"""Benchmarks are not tests: run them with `make bench`."""

from __future__ import annotations

import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """Print each baseline's median as a multiple of the kernel's."""
    from test_kernel_bench import MEDIANS, SN

    base = MEDIANS.get("fibod-kernel")
    if not base:
        return
    terminalreporter.write_line(f"SN={SN}: medians and how many times slower than fibod-kernel")
    for name, median in MEDIANS.items():
        terminalreporter.write_line(f"  {name:20s} {median:9.4f} s   x{median / base:7.1f}")
