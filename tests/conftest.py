"""Fixtures shared by the unit tests (no servers)."""

from __future__ import annotations

import pytest

from fibod.kernel import FAST, PLAIN, Kernel


@pytest.fixture(params=[FAST, PLAIN], ids=lambda k: k.name)
def kernel(request: pytest.FixtureRequest) -> Kernel:
    """Every kernel test runs against the Cython kernel and its twin."""
    return request.param
