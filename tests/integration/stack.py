"""Where the running stack is, and how tests drive its processes.

`Stack` describes what `scripts/up.sh` started (from its effective
settings file); `Supervisor` drives its supervisord (stop, start, pids,
wait until RUNNING), and `restore` brings every program back, so a test
that stopped, killed or froze one leaves the stack healthy even when it
fails. `start_worker` runs one more worker beside supervisor's;
`LogTail` reads what a program logged since a moment of the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
#: TEST_DRY_FAULTS=1 makes every fault injection of the tests a no-op
#: (`inject_signal`, `Supervisor.kill_and_hold`, `Supervisor.fault_stop`), to
#: show that each fault test fails when its fault does not happen
#: (docs/RELIABILITY.md, "Each fault test fails without its fault").
DRY_FAULTS = os.environ.get("TEST_DRY_FAULTS") == "1"


def inject_signal(pid: int, sig: signal.Signals) -> None:
    """Send a fault's signal (SIGKILL, SIGSTOP) to a process; nothing when dry."""
    if DRY_FAULTS and sig in (signal.SIGKILL, signal.SIGSTOP):
        return
    os.kill(pid, sig)


VAR = ROOT / "var"
#: The settings `scripts/up.sh` started the stack with.
EFFECTIVE_ENV_FILE = VAR / "conf" / "fibod.env"
SV_CONF = ROOT / "supervisord.conf"
SUPERVISORCTL = ROOT / ".venv" / "bin" / "supervisorctl"
#: Longest wait for a program to be RUNNING again (Kafka needs ~5-10 s).
RESTORE_TIMEOUT_S = 90
#: Longest an extra worker may take to drain after SIGTERM.
WORKER_STOP_TIMEOUT_S = 40

T = TypeVar("T")


@dataclass(frozen=True)
class Stack:
    """Where the running stack listens, read from var/conf/fibod.env."""

    base_url: str
    task_redis_url: str
    sequence_redis_url: str
    #: The apps' Redis user (fibod) logs in with redis_password; tests that
    #: look into or change the stores use the admin user.
    redis_password: str
    redis_admin_password: str
    kafka_bootstrap: str
    task_topic: str
    task_partitions: int
    #: Every effective FIBOD_* setting, for what the fields above lack.
    env: dict[str, str]

    def address(self) -> tuple[str, int]:
        """Return host and port of the base URL, for raw sockets."""
        parts = urlsplit(self.base_url)
        return parts.hostname or "127.0.0.1", parts.port or 80


def kafka_config(admin: bool = True) -> dict[str, object]:
    """How a test's Kafka client logs in: as the admin, or as the apps' user."""
    from fibod.config import load
    from fibod.queue import client_config

    return client_config(load({}, EFFECTIVE_ENV_FILE), admin)


def wait_for(check: Callable[[], T], timeout_s: float, what: str, step_s: float = 0.05) -> T:
    """Call check until it returns a truthy value; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
        except Exception as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not reached in {timeout_s} s (last error: {last_error!r})"
            )
        time.sleep(step_s)


def process_tree(root: int) -> set[int]:
    """Return a process and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


class Supervisor:
    """The stack's supervisord, through supervisorctl."""

    def ctl(self, *args: str, timeout_s: float = 120) -> str:
        """Run supervisorctl; return its output (exit status is not checked)."""
        result = subprocess.run(
            [str(SUPERVISORCTL), "-c", str(SV_CONF), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        return result.stdout + result.stderr

    def states(self) -> dict[str, str]:
        """Return program name -> state (RUNNING, STOPPED, BACKOFF, ...)."""
        out: dict[str, str] = {}
        for line in self.ctl("status").splitlines():
            words = line.split()
            if len(words) >= 2:
                out[words[0]] = words[1]
        return out

    def pid(self, name: str) -> int:
        """Return the pid of a RUNNING program; fail if it has none."""
        text = self.ctl("pid", name).strip()
        assert text.isdigit() and int(text) > 0, f"{name} has no pid: {text!r}"
        return int(text)

    def pids(self, prefix: str) -> list[int]:
        """Return the pids of the RUNNING programs whose name starts with prefix."""
        return [
            int(words[3].rstrip(","))
            for words in (line.split() for line in self.ctl("status").splitlines())
            if len(words) > 3 and words[0].startswith(prefix) and words[1] == "RUNNING"
        ]

    def processes(self, name: str) -> set[int]:
        """Return a RUNNING program's pid and its children's (gunicorn's workers)."""
        return process_tree(self.pid(name))

    def stop(self, name: str) -> None:
        """Stop a program (TERM, then KILL after its stopwaitsecs)."""
        self.ctl("stop", name)

    def start(self, name: str) -> None:
        """Start a program; supervisorctl waits for its startsecs."""
        self.ctl("start", name)

    def wait_running(self, names: Iterable[str], timeout_s: float = RESTORE_TIMEOUT_S) -> None:
        """Wait until every named program is RUNNING."""
        wanted = list(names)
        wait_for(
            lambda: all(self.states().get(n) == "RUNNING" for n in wanted),
            timeout_s,
            f"programs RUNNING: {wanted} (now {self.states()})",
            step_s=0.2,
        )

    def exit_line(self, process: str) -> str:
        """Return supervisord's last log line on how a process stopped or exited."""
        pattern = re.compile(rf"(stopped|exited): {re.escape(process)} \(")
        lines = (VAR / "log" / "supervisord.log").read_text().splitlines()
        found = [line for line in lines if pattern.search(line)]
        assert found, f"supervisord never logged {process} stopping"
        return found[-1]

    def kill_and_hold(self, name: str) -> int:
        """Kill a program with SIGKILL and keep it down; return the killed pid.

        Supervisor restarts a killed program at once (autorestart), so the
        process it started is stopped too, with SIGKILL: a JVM still
        starting up would hold a TERM for its whole stopwaitsecs.
        """
        victim = self.pid(name)
        if DRY_FAULTS:
            return victim
        os.kill(victim, signal.SIGKILL)
        stopper = threading.Thread(target=self.stop, args=(name,), daemon=True)
        stopper.start()
        deadline = time.monotonic() + 30
        while stopper.is_alive() and time.monotonic() < deadline:
            text = self.ctl("pid", name).strip()
            if text.isdigit() and int(text) not in (0, victim):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(text), signal.SIGKILL)
            stopper.join(0.2)
        assert self.states().get(name) == "STOPPED", self.states()
        return victim

    def fault_stop(self, name: str) -> None:
        """Stop a program as a test's fault (supervisorctl stop); nothing when dry."""
        if not DRY_FAULTS:
            self.stop(name)

    def restore(self) -> None:
        """Continue frozen programs, start stopped ones, wait for all."""
        states = self.states()
        for name, state in states.items():
            if state == "RUNNING":
                with contextlib.suppress(AssertionError, ProcessLookupError):
                    os.kill(self.pid(name), signal.SIGCONT)
            elif state in ("STOPPED", "EXITED", "FATAL", "BACKOFF"):
                self.start(name)
        self.wait_running(states)


class LogTail:
    """What a log file gained since this object was made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.exists() else 0

    def lines(self) -> list[str]:
        """Return the lines written since, oldest first."""
        with self.path.open("rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace").splitlines()

    def matching(self, *words: str) -> list[str]:
        """Return the lines written since that contain every one of words."""
        return [line for line in self.lines() if all(w in line for w in words)]


def program_log(name: str) -> LogTail:
    """Follow a supervisor program's log (worker:worker-0 logs to worker-0.log)."""
    return LogTail(VAR / "log" / f"{name.split(':')[-1]}.log")


def start_worker(
    stack: Stack, env: dict[str, str] | None = None, cpu: int | None = None
) -> subprocess.Popen[str]:
    """Run one more `python -m fibod.worker` on the stack's settings.

    `env` overrides FIBOD_* settings (a topic or group of the test's own);
    `cpu` pins it to one core. Output (stdout and stderr) is kept for the test.
    """
    command = [sys.executable, "-m", "fibod.worker"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=os.environ | stack.env | (env or {}) | {"PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop_worker(worker: subprocess.Popen[str]) -> str:
    """Stop a worker with one SIGTERM (it drains); return its output.

    A worker still there after WORKER_STOP_TIMEOUT_S is killed, and its
    exit status then says so.
    """
    worker.send_signal(signal.SIGTERM)
    try:
        out, _ = worker.communicate(timeout=WORKER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _ = worker.communicate(timeout=10)
    return out
