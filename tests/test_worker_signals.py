"""Stop signals: the first drains a worker, a second ends it at once.

Each test runs a real worker process on in-memory stand-ins (no Kafka,
no Redis) and signals it as supervisor or a terminal would.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

#: A worker whose consumer can hang in close(), as librdkafka's does while
#: it tries to leave the group of a broker that has gone away.
WORKER = textwrap.dedent(
    """
    import sys, time
    from fibod.config import Settings
    from fibod.segments import SegmentLayout
    from fibod.testing import (
        MemorySequenceStore, MemoryTaskStore, MemoryWorkList, RecordingPublisher,
        ScriptedConsumer,
    )
    from fibod.worker import Worker, stop_on_signals

    hang_on_close = sys.argv[1] == "hang"

    class Consumer(ScriptedConsumer):
        def poll(self, timeout=-1):
            if not getattr(self, "announced", False):
                self.announced = True
                print("polling", flush=True)
            return super().poll(timeout)

        def close(self):
            print("closing", flush=True)
            if hang_on_close:
                time.sleep(600)
            super().close()

    settings = Settings(segment_bytes=4096)
    worker = Worker(
        settings,
        Consumer(settings.task_topic),
        RecordingPublisher(),
        MemoryTaskStore(),
        MemorySequenceStore(SegmentLayout(4096)),
        MemoryWorkList(),
        "me",
    )
    stop_on_signals(worker)
    worker.run()
    print("left", flush=True)
    """
)
#: Longest a worker may take to react to a signal here, seconds.
PROMPT_S = 10


@contextlib.contextmanager
def running_worker(close: str) -> Iterator[subprocess.Popen[str]]:
    """Run a worker until it polls; kill it afterwards if it is still there."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, close],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert read_line(proc) == "polling\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_first_signal_drains_the_worker_and_it_exits_cleanly(signum: signal.Signals) -> None:
    # given a worker polling for messages
    with running_worker("returns") as proc:
        # when it gets one stop signal
        proc.send_signal(signum)
        # then it leaves the group (closes its consumer) and exits with status 0
        assert read_line(proc) == "closing\n"
        assert read_line(proc) == "left\n"
        assert proc.wait(PROMPT_S) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_second_signal_ends_a_worker_stuck_draining(signum: signal.Signals) -> None:
    # given a worker whose drain hangs in closing its consumer
    with running_worker("hang") as proc:
        proc.send_signal(signum)
        assert read_line(proc) == "closing\n"
        time.sleep(0.5)
        assert proc.poll() is None, "the drain should still be blocked"
        # when a second signal comes
        started = time.monotonic()
        proc.send_signal(signum)
        # then the process ends at once, killed by that signal
        assert proc.wait(PROMPT_S) == -signum
        assert time.monotonic() - started < PROMPT_S
