"""Fixtures for integration tests: the real stack, started by scripts/up.sh.

The `stack` fixture runs scripts/up.sh once per session (it installs what
is missing, starts supervisord and waits for every part), then yields the
effective settings from var/conf/fibod.env. It leaves the stack running
(`make down` stops it) unless FIBOD_TEST_STOP_STACK=1. Every test in this
folder is marked `integration`, so `pytest -m "not integration"` skips them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from fibod.envfile import read_env_file

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EFFECTIVE_ENV_FILE = ROOT / "var" / "conf" / "fibod.env"
#: Longest `make up` on a new machine: apt installs, .venv, Kafka jars, waits.
UP_TIMEOUT_S = 900
#: Longest `make down` (Redis flushes, Kafka's controlled shutdown).
DOWN_TIMEOUT_S = 300


@dataclass(frozen=True)
class Stack:
    """Where the running stack listens, read from var/conf/fibod.env."""

    base_url: str
    task_redis_url: str
    sequence_redis_url: str
    redis_password: str
    kafka_bootstrap: str
    task_topic: str
    task_partitions: int
    #: Every effective FIBOD_* setting, for what the fields above lack.
    env: dict[str, str]


def pytest_configure(config: pytest.Config) -> None:
    """Register the `integration` marker."""
    config.addinivalue_line("markers", "integration: needs the real stack started by scripts/up.sh")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration/ as `integration`."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


def run_script(name: str, timeout_s: float) -> None:
    """Run scripts/<name>; fail the session with its output if it fails."""
    command = ["bash", str(ROOT / "scripts" / name)]
    try:
        result = subprocess.run(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(
            f"scripts/{name} did not finish within {timeout_s:.0f} s:\n{output}", pytrace=False
        )
    if result.returncode != 0:
        pytest.fail(
            f"scripts/{name} failed (exit {result.returncode}):\n{result.stdout}", pytrace=False
        )
    print(result.stdout)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Start the whole stack (or check the running one) and describe it."""
    run_script("up.sh", UP_TIMEOUT_S)
    env = read_env_file(EFFECTIVE_ENV_FILE)
    yield Stack(
        base_url=env["FIBOD_BASE_URL"],
        task_redis_url=env["FIBOD_TASK_REDIS_URL"],
        sequence_redis_url=env["FIBOD_SEQUENCE_REDIS_URL"],
        redis_password=env["FIBOD_REDIS_PASSWORD"],
        kafka_bootstrap=env["FIBOD_KAFKA_BOOTSTRAP"],
        task_topic=env["FIBOD_TASK_TOPIC"],
        task_partitions=int(env["FIBOD_TASK_PARTITIONS"]),
        env=env,
    )
    if os.environ.get("FIBOD_TEST_STOP_STACK") == "1":
        run_script("down.sh", DOWN_TIMEOUT_S)


@pytest.fixture(scope="session")
def task_redis(stack: Stack) -> Iterator[redis.Redis]:
    """A client of the task store (Redis #1), with the stack's password."""
    client = redis.Redis.from_url(stack.task_redis_url, password=stack.redis_password)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sequence_redis(stack: Stack) -> Iterator[redis.Redis]:
    """A client of the sequence store (Redis #2), with the stack's password."""
    client = redis.Redis.from_url(stack.sequence_redis_url, password=stack.redis_password)
    yield client
    client.close()


@pytest.fixture
def supervisor_pids(stack: Stack):
    """Return a function: pids of the supervisor programs whose name starts with a prefix."""

    def pids(prefix: str) -> list[int]:
        ctl = ROOT / ".venv" / "bin" / "supervisorctl"
        out = subprocess.run(
            [str(ctl), "-c", str(ROOT / "supervisord.conf"), "status"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [
            int(words[3].rstrip(","))
            for words in (line.split() for line in out.splitlines())
            if len(words) > 3 and words[0].startswith(prefix) and words[1] == "RUNNING"
        ]

    return pids
