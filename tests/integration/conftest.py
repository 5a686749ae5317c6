"""Fixtures for integration tests: the real stack, started by scripts/up.sh.

The `stack` fixture runs scripts/up.sh once per session (it installs what
is missing, starts supervisord and waits for every part), then yields the
effective settings from var/conf/fibod.env. It leaves the stack running
(`make down` stops it) unless FIBOD_TEST_STOP_STACK=1. Every test in this
folder is marked `integration`, so `pytest -m "not integration"` skips them.
Fixtures more than one test file needs live here, not in the files.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fibod.config import REDIS_ADMIN_USER, Settings
from fibod.counters import Counters
from fibod.envfile import read_env_file
from fibod.segments import SegmentLayout
from fibod.sequences import SequenceStore
from fibod.tasks import TaskStore
from fibod.textcache import TextCache
from tests.integration.clients import Client, no_fill_under_way
from tests.integration.stack import EFFECTIVE_ENV_FILE, ROOT, Stack, Supervisor, wait_for

HERE = Path(__file__).resolve().parent
#: Longest `make up` on a new machine: apt installs, .venv, Kafka jars, waits.
UP_TIMEOUT_S = 900
#: Longest `make down` (Redis flushes, Kafka's controlled shutdown).
DOWN_TIMEOUT_S = 300


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
        redis_admin_password=env["FIBOD_REDIS_ADMIN_PASSWORD"],
        kafka_bootstrap=env["FIBOD_KAFKA_BOOTSTRAP"],
        task_topic=env["FIBOD_TASK_TOPIC"],
        task_partitions=int(env["FIBOD_TASK_PARTITIONS"]),
        env=env,
    )
    if os.environ.get("FIBOD_TEST_STOP_STACK") == "1":
        run_script("down.sh", DOWN_TIMEOUT_S)


@pytest.fixture(scope="session")
def task_redis(stack: Stack) -> Iterator[redis.Redis]:
    """A client of the task store (Redis #1), as its admin user."""
    client = redis.Redis.from_url(
        stack.task_redis_url, username=REDIS_ADMIN_USER, password=stack.redis_admin_password
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def sequence_redis(stack: Stack) -> Iterator[redis.Redis]:
    """A client of the sequence store (Redis #2), as its admin user."""
    client = redis.Redis.from_url(
        stack.sequence_redis_url, username=REDIS_ADMIN_USER, password=stack.redis_admin_password
    )
    yield client
    client.close()


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    """The settings the stack runs with, as fibod reads them."""
    return Settings.from_env(stack.env)


@pytest.fixture(scope="session")
def layout(settings: Settings) -> SegmentLayout:
    """The segment layout of the stack's sequence store."""
    return SegmentLayout(settings.segment_bytes)


@pytest.fixture
def http(stack: Stack) -> Iterator[Client]:
    """An HTTP client of the stack, through nginx."""
    with Client(stack.base_url) as client:
        yield client


@pytest.fixture
def sequence_store(
    sequence_redis: redis.Redis, task_redis: redis.Redis, layout: SegmentLayout
) -> SequenceStore:
    """The stack's sequence store (its counters in the task store), fibod's own class."""
    return SequenceStore(sequence_redis, layout, Counters(task_redis))


@pytest.fixture(scope="session")
def task_store(settings: Settings) -> TaskStore:
    """The stack's task store, through fibod's own store class."""
    return TaskStore.from_settings(settings)


@pytest.fixture(scope="session")
def supervisor(stack: Stack) -> Supervisor:
    """The stack's supervisord, through supervisorctl."""
    return Supervisor()


@pytest.fixture(scope="session")
def text_cache(settings: Settings) -> TextCache:
    """The fetch host's text cache: this machine's folder, as the fetch app keeps it."""
    return TextCache(settings.text_cache_dir, settings.text_cache_bytes)


@pytest.fixture
def streamed_by_the_app(text_cache: TextCache) -> None:
    """Empty the text cache, so the test's first fetch is streamed by the fetch app.

    For tests of what the stream does (counters, faults mid-stream); a
    later fetch of the same body may come from the cache again. A fill an
    earlier test began is waited for first: finishing after the clear, it
    would put the body back, and nginx would send it instead of the app.
    """
    wait_for(lambda: no_fill_under_way(text_cache), 60, "the text cache fills under way finished")
    text_cache.clear()
