"""Who the programs run as, and what of the state dir they may touch (no servers)."""

from __future__ import annotations

import os
import pwd
import stat
import tempfile
from pathlib import Path

import pytest
import run_user
from render_conf import FALLBACK_NOTE, render_all
from run_user import Resolution, RunUser, blocked_at, fallback_reason, resolve

from fibod.config import Settings

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch users")
#: A user that exists on every Debian machine and is not root.
OTHER = "nobody"


def test_an_empty_run_user_means_whoever_runs_make_up() -> None:
    resolution = resolve(Settings(run_user=""))
    assert (resolution.user, resolution.fallback_reason) == (RunUser.current().name, None)


def test_a_port_below_1024_keeps_nginx_from_running_as_another_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a kernel that keeps ports below 1024 for root (its default)
    monkeypatch.setattr(run_user, "unprivileged_port_start", lambda: 1024)
    reason = fallback_reason(Settings(run_user=OTHER, http_port=80))
    assert reason == f"nginx as user {OTHER} cannot listen on port 80 (below 1024)"


def test_the_warning_says_who_runs_why_and_what_to_do() -> None:
    resolution = Resolution("root", "user fibod cannot run /root/x/.venv/bin/python")
    assert resolution.warning() == (
        "WARNING: services run as root: user fibod cannot run /root/x/.venv/bin/python; "
        "clone elsewhere, or set FIBOD_RUN_USER= to run them as root knowingly"
    )


def test_blocked_at_names_the_first_folder_the_user_cannot_enter() -> None:
    # given a folder open to all inside one closed to others (as /root is)
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        top.chmod(0o755)
        (top / "home").mkdir(mode=0o700)
        (top / "home" / "clone").mkdir(mode=0o755)
        python = top / "home" / "clone" / "python"
        python.write_text("")
        # then the closed one is named, with its mode, for a user who is not its owner
        nobody = RunUser.named(OTHER)
        assert blocked_at(python, nobody) == f"{top / 'home'} is 0700"
    finally:
        for path in sorted(top.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        top.rmdir()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@needs_root
def test_the_run_user_owns_what_its_programs_write_and_nothing_root_reads(tmp_path: Path) -> None:
    # given a state dir rendered for a run user other than root
    user = RunUser.named(OTHER)
    state = tmp_path / "var"
    settings = Settings(state_dir=str(state), run_user=OTHER, redis_password="c" * 48)
    render_all(settings)
    # then the state dir and its configs are root's, read by the user's group only
    assert (mode(state), state.stat().st_uid, state.stat().st_gid) == (0o750, 0, user.gid)
    secret = state / "conf" / "task-store.conf"
    assert (mode(secret), secret.stat().st_uid, secret.stat().st_gid) == (0o640, 0, user.gid)
    # the effective settings and supervisord's run/ are root's alone
    effective = state / "conf" / "fibod.env"
    assert (mode(effective), effective.stat().st_uid, effective.stat().st_gid) == (0o600, 0, 0)
    assert (mode(state / "run"), (state / "run").stat().st_uid) == (0o700, 0)
    # and what the programs write is the user's: data, temp, nginx's prefix, its own logs
    for path in ("redis/task-store", "kafka", "tmp", "nginx/proxy", "log/nginx-error.log"):
        assert (state / path).stat().st_uid == user.uid, path
    assert (state / "log").stat().st_uid == 0  # supervisord writes the programs' output there


@needs_root
def test_everything_stays_roots_alone_when_the_stack_runs_as_root(tmp_path: Path) -> None:
    # given a state dir rendered after a fallback to root
    state = tmp_path / "var"
    settings = Settings(state_dir=str(state), run_user="root", redis_password="c" * 48)
    render_all(settings, fallback_reason="user fibod cannot run /root/x/.venv/bin/python")
    # then nothing is open to any group, and the effective settings say why
    assert mode(state) == 0o700 and mode(state / "conf" / "task-store.conf") == 0o600
    assert {p.stat().st_gid for p in state.rglob("*")} == {0}
    effective = (state / "conf" / "fibod.env").read_text()
    assert f"# {FALLBACK_NOTE}user fibod cannot run /root/x/.venv/bin/python\n" in effective
    assert "FIBOD_RUN_USER=root\n" in effective


@needs_root
def test_a_symlink_planted_as_a_log_is_not_followed(tmp_path: Path) -> None:
    # given a log file the run user's program opens, replaced by a link to a root file
    state = tmp_path / "var"
    settings = Settings(state_dir=str(state), run_user=OTHER, redis_password="c" * 48)
    render_all(settings)
    target = tmp_path / "roots-file"
    target.write_text("root's\n")
    log = state / "log" / "task-redis.log"
    log.unlink()
    log.symlink_to(target)
    # when rendered again
    render_all(settings)
    # then the link is gone, the log a plain file of the user, the target untouched
    assert not log.is_symlink() and log.stat().st_uid == pwd.getpwnam(OTHER).pw_uid
    assert target.stat().st_uid == 0 and target.read_text() == "root's\n"
