"""The worker's place on the host: lowering its priority (pure logic, a child process)."""

from __future__ import annotations

import os
import subprocess
import sys


def child_niceness(nice: int) -> tuple[str, int]:
    """Lower a fresh child's priority by nice; return what it said and its niceness after."""
    code = (
        "import os; from fibod.affinity import lower_priority; "
        f"said = lower_priority({nice}); print(said); print(os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    said, after = out.stdout.splitlines()
    return said, int(after)


def test_lower_priority_adds_to_the_niceness_and_says_so() -> None:
    before = os.nice(0)
    said, after = child_niceness(5)
    assert after == min(before + 5, 19)
    assert said == f"at niceness {after}"


def test_no_nice_leaves_the_priority_as_it_is() -> None:
    said, after = child_niceness(0)
    assert after == os.nice(0)
    assert "normal priority" in said
