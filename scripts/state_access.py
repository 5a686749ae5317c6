"""Who may read and write what under a state dir (var/), once the run user is known.

The programs run as the run user (scripts/run_user.py) and write only
where they must: their data (Redis, Kafka), temp and metrics folders,
nginx's prefix, Kafka's log folder and the few log files nginx and Redis
open themselves. Everything root reads or runs stays root's: the state
dir and conf/ are root's with the run user's group (read only to it), the
effective settings (sourced by `make up`) and run/ (supervisord's socket)
are root's alone, and supervisord writes the programs' output logs into
log/, a folder the run user cannot change. So no program can plant a
file or a symlink that root later reads, runs or writes through. Nobody
else gets in at all: the state dir is 0750 (0700 when everything is root).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from run_user import RunUser

#: Folders the programs write into (their whole tree belongs to the run user).
WRITABLE_DIRS = ("tmp", "kafka", "redis", "nginx", "metrics", "sentinel", "log/kafka")
#: Folders only root may enter.
ROOT_ONLY_DIRS = ("run",)
#: Log files the programs open themselves (by name, not through supervisord).
SERVICE_LOGS = ("nginx-access.log", "nginx-error.log", "task-redis.log", "sequence-redis.log")


def chown_tree(top: Path, user: RunUser) -> None:
    """Give a folder and everything in it to the user (symlinks themselves, not targets)."""
    for folder, dirs, files in os.walk(top):
        os.lchown(folder, user.uid, user.gid)
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.lstat(path).st_uid != user.uid or os.lstat(path).st_gid != user.gid:
                os.lchown(path, user.uid, user.gid)


def private_group(user: RunUser) -> int:
    """The group that may read the stack's configs: the run user's, or root's alone."""
    return user.gid if user.switched else 0


def folder_mode(user: RunUser) -> int:
    """Mode of the state dir and conf/: the run user's group reads, nobody else."""
    return 0o750 if user.switched else 0o700


def apply(state: Path, user: RunUser, service_logs: Iterable[str] = ()) -> None:
    """Set the owners and modes of a rendered state dir for this run user.

    As another user than root nothing can be given away: the state dir is
    only closed to others, as before.
    """
    if os.geteuid() != 0:
        state.chmod(0o700)
        return
    group = private_group(user)
    for folder in (state, state / "conf", state / "log"):
        os.chown(folder, 0, group)
        folder.chmod(folder_mode(user))
    for name in ROOT_ONLY_DIRS:
        os.chown(state / name, 0, 0)
        (state / name).chmod(0o700)
    for name in WRITABLE_DIRS:
        if (state / name).is_dir():
            chown_tree(state / name, user)
    for name in (*SERVICE_LOGS, *service_logs):
        log = state / "log" / name
        if log.is_symlink():
            log.unlink()  # nothing the programs could write is followed by root
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
        try:
            os.fchown(fd, user.uid, user.gid)
        finally:
            os.close(fd)


def give_folder(folder: Path, user: RunUser) -> None:
    """Create a folder the programs write (the text cache) and give its tree to them.

    Its parents are created root's and left so (0755 inside a state dir that
    is closed to others).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        chown_tree(folder, user)


def give_group_read(path: Path, user: RunUser) -> None:
    """Let the run user's group read a private file (mode 640, root's), never others."""
    if os.geteuid() == 0:
        os.chown(path, 0, private_group(user))
    path.chmod(0o640 if user.switched else 0o600)
