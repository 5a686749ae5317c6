"""Freed memory goes back to the OS after a stream (glibc's malloc_trim)."""

from __future__ import annotations

import platform

import pytest

from fibod.memory import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_lowers_rss_after_large_buffers_are_freed() -> None:
    def rss_kib() -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

    # given many 4 MB buffers freed after use, as a stream leaves them
    blocks = [bytes(4 << 20) for _ in range(2)]
    del blocks
    blocks = [bytearray(4 << 20) for _ in range(40)]  # reuse the raised mmap threshold
    for block in blocks:
        block[::4096] = b"x" * len(block[::4096])
    del blocks
    before = rss_kib()
    # when the heap is trimmed
    assert release_free_memory()
    # then the ~160 MB glibc kept after the frees go back (it keeps them
    # only where its mmap threshold rose; otherwise there is nothing to drop)
    after = rss_kib()
    assert after <= before
    if before > 128 * 1024:
        assert after < before - 64 * 1024, (before, after)
