"""fibod: compute huge Fibonacci sequences and stream them to HTTP clients."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """Read `__version__` from the installed metadata on first use only.

    importlib.metadata costs ~100 ms of start-up that `fibod seq` need not pay.
    """
    if name != "__version__":
        raise AttributeError(f"module 'fibod' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fibod")
    except PackageNotFoundError:  # a tree that was never installed
        return "0+unknown"
