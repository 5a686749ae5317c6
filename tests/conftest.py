"""Fixtures shared by the unit tests (no servers), and the --cluster switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from fibod.kernel import FAST, PLAIN, Kernel


@pytest.fixture(params=[FAST, PLAIN], ids=lambda k: k.name)
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Every kernel test runs against the Cython kernel and its twin."""
    return request.param


#: The multi-host rehearsal's tests: root, namespaces, minutes; only with --cluster.
CLUSTER_TESTS = Path(__file__).resolve().parent / "cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --cluster, which `make cluster-test` passes."""
    parser.addoption(
        "--cluster",
        action="store_true",
        help="run tests/cluster/: bring the multi-host rehearsal up and down (root)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave tests/cluster/ out of every run but `make cluster-test`."""
    if collection_path == CLUSTER_TESTS and not config.getoption("--cluster"):
        return True
    return None
