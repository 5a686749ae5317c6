"""`make cluster-down` leaves nothing: no namespace, link or process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from inventory import CLUSTER_VAR
from netns import VETH_PREFIX

from tests.cluster.conftest import DOWN_TIMEOUT_S, Rehearsal, cluster


def rehearsal_processes() -> list[str]:
    """Return pid and command of every process started for the rehearsal."""
    marker = f"unix://{CLUSTER_VAR}/".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            environ = (proc / "environ").read_bytes()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in environ or str(CLUSTER_VAR) in cmdline:
            found.append(f"{proc.name} {cmdline[:120]}")
    return found


@pytest.mark.teardown
def test_down_leaves_nothing_and_may_run_again(rehearsal: Rehearsal) -> None:
    # given the rehearsal runs
    assert rehearsal_processes()
    # when it is taken down, twice
    first = cluster("down", DOWN_TIMEOUT_S)
    second = cluster("down", DOWN_TIMEOUT_S)
    # then both succeed and nothing of it is left
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert rehearsal.inventory.namespace_prefix not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in links.stdout.splitlines()]
    assert rehearsal.inventory.bridge not in names
    assert not [name for name in names if name.startswith(VETH_PREFIX)]
    assert rehearsal_processes() == []
