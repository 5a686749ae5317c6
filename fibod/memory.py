"""Give freed heap memory back to the operating system after big work.

A streamed response allocates a few MB per segment. glibc keeps freed
blocks of that size in its arenas (its mmap threshold grows after the
first large free), so a fetch process would stay at its peak RSS long
after the stream ended. `malloc_trim(0)` returns those pages; it is
cheap next to a stream and a no-op where libc lacks it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True if libc could do it."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
