"""Freed memory goes back to the OS after a stream (glibc's malloc_trim)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

#: Freed by the probe: 40 blocks of 4 MiB, each followed by a small block
#: that stays allocated. glibc returns free memory to the OS by itself only
#: at the top of its heap, so with those small blocks above them the freed
#: 160 MiB stay resident until the heap is trimmed.
PROBE = textwrap.dedent(
    """
    import json, os
    from fibod.memory import release_free_memory

    PAGE = os.sysconf("SC_PAGE_SIZE")

    def rss_mib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE / 2**20

    # a first large block freed raises glibc's mmap threshold above 4 MiB,
    # so the blocks below come from the heap, as a stream's segments do
    first = bytearray(8 << 20)
    del first
    baseline = rss_mib()
    blocks, pins = [], []
    for _ in range(40):
        block = bytearray(4 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        blocks.append(block)
        pins.append(bytearray(64 << 10))
    held = rss_mib()
    del blocks
    freed = rss_mib()
    ok = release_free_memory()
    trimmed = rss_mib()
    print(json.dumps(dict(baseline=baseline, held=held, freed=freed, trimmed=trimmed, ok=ok)))
    """
)
#: Of the 160 MiB freed, at least this much must leave the resident set.
RETURNED_MIB = 120


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_free_memory_returns_freed_heap_blocks_to_the_os() -> None:
    # given a process that allocated 160 MiB on the heap and freed it
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    rss = json.loads(result.stdout)
    assert rss["held"] - rss["baseline"] > 150, rss
    # and glibc kept it: freeing alone did not shrink the resident set
    assert rss["held"] - rss["freed"] < 16, rss
    # when the heap is trimmed
    assert rss["ok"] is True
    # then the freed memory leaves the resident set
    assert rss["freed"] - rss["trimmed"] > RETURNED_MIB, rss
