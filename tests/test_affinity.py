"""The worker's place on the host: lowering its priority (pure logic, a child process)."""

from __future__ import annotations

import os
import subprocess
import sys


def child_niceness(nice: int) -> tuple[str, int]:
    """Ask a fresh child to run at nice; return what it said and its niceness after."""
    code = (
        "import os; from fibod.affinity import lower_priority; "
        f"said = lower_priority({nice}); print(said); print(os.nice(0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    said, after = out.stdout.splitlines()
    return said, int(after)


def test_lower_priority_sets_the_niceness_and_says_so() -> None:
    said, after = child_niceness(os.nice(0) + 5)
    assert after == os.nice(0) + 5
    assert said == f"at niceness {after}"


def test_a_niceness_below_the_current_one_is_not_a_raise_in_priority() -> None:
    said, after = child_niceness(0)
    assert after == os.nice(0)
    assert said == f"at niceness {after}"
