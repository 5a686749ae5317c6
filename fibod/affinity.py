"""Where a worker runs: pinned to one core (no shared caches), at a lower priority."""

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


def lower_priority(nice: int) -> str:
    """Run this process at niceness `nice` (never higher a priority than it has); say so.

    Called before any thread starts, so every thread (Kafka's too) inherits
    it. Workers are throughput work: on a host they share with the API, the
    API's requests run first and the backlog takes the cores they leave.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return f"at niceness {max(nice, current)}"
