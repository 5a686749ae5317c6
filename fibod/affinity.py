"""Pin a worker process to one core, so workers never share a core's caches."""

from __future__ import annotations

import os


def pin_to_core(index: int, enabled: bool) -> str:
    """Pin this process to the index-th usable core; say what was done.

    Nothing is pinned when pinning is off or the host has fewer usable
    cores than index + 1 (more workers than cores): the scheduler decides.
    """
    if not enabled:
        return "not pinned (FIBOD_WORKER_PIN=0)"
    cores = sorted(os.sched_getaffinity(0))
    if index >= len(cores):
        return f"not pinned: worker {index} but only {len(cores)} usable cores"
    os.sched_setaffinity(0, {cores[index]})
    return f"pinned to core {cores[index]}"
