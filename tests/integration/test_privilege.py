"""Least privilege: the programs run as the run user, own what they write, and var/ is closed.

`make up` runs every program as FIBOD_RUN_USER, or, when that user cannot
run the stack from this checkout, as the invoking user with a warning
recorded in the effective settings. The tests ask the same question
independently (scripts/run_user.py's check, as the user) and hold the
stack to the answer: on a checkout the run user can reach, falling back
is a failure, not an option.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest
from render_conf import FALLBACK_NOTE
from run_user import RunUser, fallback_reason

from fibod.config import load
from fibod.textcache import FILL_NICE
from tests.integration.faults import record
from tests.integration.stack import EFFECTIVE_ENV_FILE, VAR, process_tree

pytestmark = pytest.mark.integration

#: Every program of the one-machine stack (worker:worker-N are the worker group).
PROGRAMS = ("task-redis", "sequence-redis", "kafka", "nginx", "submit", "fetch", "vip", "monitor")


def uid_of(pid: int) -> int:
    """Return the real uid of a process (0 if it is gone meanwhile: it must not count)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def name_of(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]


def expected_user(stack) -> tuple[str, str | None]:
    """Who the programs must run as here, and why not the run user asked for (or None)."""
    wanted = load(dict(os.environ), VAR / "fibod.env").run_user
    invoking = RunUser.current().name
    if os.geteuid() != 0 or not wanted or wanted == invoking:
        return invoking, None
    reason = fallback_reason(load(stack.env | {"FIBOD_RUN_USER": wanted}))
    return (invoking, reason) if reason else (wanted, None)


def test_every_program_runs_as_the_run_user_and_only_supervisord_as_root(stack, supervisor) -> None:
    # given who the programs must run as on this checkout, asked independently
    user, reason = expected_user(stack)
    uid = pwd.getpwnam(user).pw_uid
    effective = EFFECTIVE_ENV_FILE.read_text()
    # then the effective settings say the same, and a fallback says why
    assert stack.env.get("FIBOD_RUN_USER") == user, f"effective run user is not {user}"
    if reason is None:
        assert FALLBACK_NOTE not in effective, "make up fell back, yet the run user can run it"
    else:
        assert f"# {FALLBACK_NOTE}{reason}" in effective, "a fallback without its reason"
    # when every process of supervisord's tree is looked at, by program
    states = supervisor.states()
    programs = [name for name in states if name in PROGRAMS or name.startswith("worker:")]
    assert set(PROGRAMS) <= set(programs) and len(programs) > len(PROGRAMS), states
    users: dict[str, list[int]] = {}
    for name in programs:
        pids = supervisor.processes(name)
        users[name] = sorted({uid_of(pid) for pid in pids})
        # then each program's processes (gunicorn's workers, nginx's, the JVM) run as the user
        assert users[name] == [uid], f"{name}: uids {users[name]}, expected {uid} ({user})"
    supervisord = int((VAR / "run" / "supervisord.pid").read_text())
    as_root = sorted(
        name_of(pid) for pid in process_tree(supervisord) - {supervisord} if uid_of(pid) == 0
    )
    if uid != 0:
        # and nothing of the stack but supervisord itself is root
        assert as_root == [], f"root processes under supervisord: {as_root}"
    record(
        "test_every_program_runs_as_the_run_user_and_only_supervisord_as_root",
        run_user=user,
        fallback=reason,
        programs={name: [pwd.getpwuid(u).pw_name for u in uids] for name, uids in users.items()},
        processes=len(process_tree(supervisord)) - 1,
        root_processes=as_root,
    )


def as_user(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv as the user (no PAM session: setpriv)."""
    user = RunUser.named(name)
    command = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_what_the_programs_write_is_theirs_and_var_is_closed_to_others(stack) -> None:
    user = RunUser.named(stack.env["FIBOD_RUN_USER"])
    # given files the programs made themselves: Redis's append-only file, Kafka's
    # log and KRaft metadata, nginx's pid, a gunicorn worker's heartbeat file
    written = [
        *(VAR / "redis" / "task-store" / "appendonlydir").iterdir(),
        VAR / "log" / "kafka" / "server.log",
        VAR / "kafka" / "data" / "meta.properties",
        VAR / "nginx" / "nginx.pid",
        *(path for path in (VAR / "tmp").iterdir() if path.is_file()),
    ]
    assert len(written) >= 5, written
    # then they belong to the run user
    assert {p.name: p.stat().st_uid for p in written} == {p.name: user.uid for p in written}
    # and var/ lets nobody else in: no bit for others, and `nobody` reads nothing
    assert stat.S_IMODE(VAR.stat().st_mode) & 0o007 == 0, oct(VAR.stat().st_mode)
    for path in (VAR / "log" / "supervisord.log", VAR / "conf" / "task-store.conf"):
        assert as_user("nobody", "cat", str(path)).returncode != 0, f"nobody read {path}"
    # and root's own files stay root's: the effective settings (sourced by make up)
    # and supervisord's socket are not the run user's, who cannot write to conf/
    # or log/ (where supervisord writes and root reads) either
    for path in (EFFECTIVE_ENV_FILE, VAR / "run" / "supervisor.sock", VAR / "conf"):
        assert path.stat().st_uid == 0, f"{path} belongs to uid {path.stat().st_uid}"
    assert stat.S_IMODE(EFFECTIVE_ENV_FILE.stat().st_mode) == 0o600
    if user.uid != 0:
        assert as_user(user.name, "cat", str(EFFECTIVE_ENV_FILE)).returncode != 0
        for folder in ("conf", "log", "run"):
            probe = VAR / folder / "probe-by-run-user"
            assert as_user(user.name, "touch", str(probe)).returncode != 0, f"wrote {probe}"
        # while the configs its programs read are readable by it, mode 640
        assert as_user(user.name, "cat", str(VAR / "conf" / "task-store.conf")).returncode == 0
        assert stat.S_IMODE((VAR / "conf" / "task-store.conf").stat().st_mode) == 0o640


def niceness_of(tid_stat: Path) -> int:
    """Return a thread's nice value (field 19 of /proc/<pid>/task/<tid>/stat)."""
    return int(tid_stat.read_text().rsplit(")", 1)[1].split()[16])


def test_workers_and_all_their_threads_run_at_the_worker_niceness(stack, supervisor) -> None:
    # given the niceness the effective settings give the workers, and the API's programs
    wanted = int(stack.env["FIBOD_WORKER_NICE"])
    workers = [name for name in supervisor.states() if name.startswith("worker:")]
    assert workers, supervisor.states()
    threads: dict[str, set[int]] = {}
    for name in (*workers, "submit", "fetch"):
        for pid in supervisor.processes(name):
            # every thread: Kafka's client threads start after the worker lowered itself
            stats = list(Path(f"/proc/{pid}/task").glob("*/stat"))
            threads.setdefault(name, set()).update(niceness_of(s) for s in stats)
    # then every thread of every worker runs at it, and the apps that answer requests at 0
    # (but for the fetch's text cache fills, lowered on purpose)
    for name in workers:
        assert threads[name] == {wanted}, f"{name}: niceness {threads[name]}, wanted {wanted}"
    assert threads["submit"] == {0}, threads
    assert 0 in threads["fetch"] and threads["fetch"] <= {0, FILL_NICE}, threads
