"""The rehearsal, brought up once per session and taken down at its end.

`make cluster-test` runs these tests (pytest --cluster); the default test
run leaves this folder out. The `rehearsal` fixture runs
`scripts/cluster.py up` (a running rehearsal is only checked), and the
session ends with `scripts/cluster.py down` whatever happened. Tests
marked `teardown` run last: they take the rehearsal down themselves and
check that nothing is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from inventory import Host, Inventory, load_inventory, state_dir

from fibod.config import Settings, load

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "scripts" / "cluster.py"
#: Longest cold `cluster-up` (measured 25 s here) and `cluster-down` (8 s).
UP_TIMEOUT_S = 600
DOWN_TIMEOUT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    """Register the `teardown` marker."""
    config.addinivalue_line("markers", "teardown: takes the rehearsal down; runs last")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the tests marked `teardown` after every other one."""
    items.sort(key=lambda item: item.get_closest_marker("teardown") is not None)


def cluster(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `scripts/cluster.py command` as the Makefile does; return its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIBOD_")}
    return subprocess.run(
        [sys.executable, str(CLUSTER), command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@dataclass(frozen=True)
class Rehearsal:
    """The running rehearsal: its hosts, their settings, its entry URL."""

    inventory: Inventory
    entry_url: str

    def settings(self, host: Host) -> Settings:
        """Return the settings the host was rendered with."""
        return load({}, state_dir(host) / "conf" / "fibod.env")

    @property
    def password(self) -> str:
        """Return the Redis admin user's password every host shares."""
        return self.settings(self.inventory.hosts[0]).redis_admin_password

    def netns_run(self, host: Host, *argv: str) -> str:
        """Run a command inside the host's namespace; return its output."""
        namespace = self.inventory.namespace(host)
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, *argv],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout


@pytest.fixture(scope="session")
def rehearsal() -> Iterator[Rehearsal]:
    """Bring the rehearsal up for the session; take it down at the end."""
    if os.geteuid() != 0:
        pytest.fail("the rehearsal needs root (network namespaces)", pytrace=False)
    try:
        result = cluster("up", UP_TIMEOUT_S)
        if result.returncode != 0:
            pytest.fail(
                f"cluster.py up failed (exit {result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
        print(result.stdout)
        yield Rehearsal(load_inventory(), result.stdout.strip().splitlines()[-1])
    finally:
        cluster("down", DOWN_TIMEOUT_S)
