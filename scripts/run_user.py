"""The unprivileged user the stack's programs run as (FIBOD_RUN_USER).

supervisord starts as root and drops each program to this user (`user=`
in ops/supervisor/). Before that, as root, `make up` (and the rehearsal)
creates the user if missing, then checks that it can actually run the
stack from this checkout: run the venv's Python and import the kernel and
the clients, read the broker's jars, the start scripts and the dashboard,
and reach the state dir. A checkout it cannot reach (under /root, mode
0700) makes the stack run as the invoking user instead, with one warning
line saying why and what to do: a stack that runs beats one that does not
start. docs/OPERATIONS.md, "The run user".
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fibod.config import Settings

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
#: What the programs read from the checkout besides the venv.
CHECKOUT_READS = (
    ROOT / "ops" / "kafka" / "start.sh",
    ROOT / "ops" / "kafka" / "log4j2.properties",
    ROOT / "ops" / "kafka" / "lib",
    ROOT / "ops" / "redis" / "sequence-node-start.sh",
    ROOT / "ops" / "dashboard",
)
#: Modules every Python program of the stack imports.
IMPORTS = "fibod._fastfib, fibod.worker, fibod.web, confluent_kafka, redis, gunicorn, gmpy2"
#: Run as the user with the state dir's folder, then what it reads: exit 0 if it may enter
#: the one and read the others (a folder: list it and read what is in it), else name one.
CHECK_CODE = f"""
import os, sys
import {IMPORTS}
def readable(path):
    if not os.path.isdir(path):
        return os.access(path, os.R_OK)
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(os.access(os.path.join(path, n), os.R_OK) for n in names)
way_in, *reads = sys.argv[1:]
for path, ok in [(way_in, os.access(way_in, os.X_OK))] + [(p, readable(p)) for p in reads]:
    if not ok:
        print(path)
        sys.exit(1)
"""
#: Longest the check as the run user may take (imports of a cold venv).
CHECK_TIMEOUT_S = 120
#: Where a system user without a home gets one (Debian's convention).
NO_HOME = "/nonexistent"


@dataclass(frozen=True)
class RunUser:
    """A user the programs run as, with the ids to give its files."""

    name: str
    uid: int
    gid: int

    @classmethod
    def current(cls) -> RunUser:
        """Return the user running this script."""
        entry = pwd.getpwuid(os.geteuid())
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @classmethod
    def named(cls, name: str) -> RunUser:
        """Return the user `name`, or the current one if `name` is empty or unknown."""
        try:
            entry = pwd.getpwnam(name) if name else None
        except KeyError:
            entry = None
        if entry is None:
            return cls.current()
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid)

    @property
    def switched(self) -> bool:
        """True if the programs drop from root to this user (its files need owning)."""
        return os.geteuid() == 0 and self.uid != 0


@dataclass(frozen=True)
class Resolution:
    """Who the programs run as, and why not the user asked for (None: as asked)."""

    user: str
    fallback_reason: str | None = None

    def warning(self) -> str:
        """The one line `make up` prints when it fell back."""
        return (
            f"WARNING: services run as {self.user}: {self.fallback_reason}; clone elsewhere, "
            f"or set FIBOD_RUN_USER= to run them as {self.user} knowingly"
        )


def blocked_at(path: Path, user: RunUser) -> str:
    """Name the first folder on the way to path the user may not enter, with its mode.

    Mode bits only (no ACLs): this explains a failure seen by running as
    the user, it does not decide anything.
    """
    groups = set(os.getgrouplist(user.name, user.gid))
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except OSError as exc:
            return f"{folder}: {exc.strerror}"
        if folder != path or stat.S_ISDIR(info.st_mode):
            if info.st_uid == user.uid:
                bit = stat.S_IXUSR
            elif info.st_gid in groups:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not info.st_mode & bit:
                return f"{folder} is {stat.S_IMODE(info.st_mode):04o}"
    return f"{path} is {stat.S_IMODE(path.stat().st_mode):04o}"


def ensure_user(name: str) -> str | None:
    """Create the system user `name` if missing; return why not, or None."""
    try:
        pwd.getpwnam(name)
        return None
    except KeyError:
        pass
    useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if useradd is None:
        return f"user {name} does not exist and there is no useradd to create it"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", NO_HOME,
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        return f"cannot create user {name}: {result.stderr.strip() or result.returncode}"
    return None


def nearest_existing(path: Path) -> Path:
    """Return path or its nearest ancestor that exists."""
    while not path.exists():
        path = path.parent
    return path


@functools.cache
def check_access(name: str, way_in: str) -> str | None:
    """Run the venv's Python as the user on what the programs read; return why not, or None.

    way_in is the folder that holds the state dir (the renderer makes the
    state dir and gives it to the user, but cannot open the way to it).
    """
    user = RunUser.named(name)
    reads = [str(p) for p in CHECKOUT_READS if p.exists()]
    try:
        result = subprocess.run(
            [str(VENV_PYTHON), "-c", CHECK_CODE, way_in, *reads],
            user=user.uid, group=user.gid, extra_groups=[], cwd="/",
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": NO_HOME},
            capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False,
        )  # fmt: skip
    except OSError:
        return f"user {name} cannot run {VENV_PYTHON} ({blocked_at(VENV_PYTHON, user)})"
    if result.returncode == 0:
        return None
    unreadable = result.stdout.strip().splitlines()
    if unreadable:
        path = Path(unreadable[-1])
        return f"user {name} cannot reach {path} ({blocked_at(path, user)})"
    error = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return f"user {name} cannot import the stack's modules from {VENV_PYTHON}: {error}"


def unprivileged_port_start() -> int:
    """Return the lowest port a user other than root may listen on."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def runs_nginx(settings: Settings) -> bool:
    """True if this host's supervisord runs nginx (FIBOD_SUPERVISOR_PROGRAMS)."""
    return any(
        path.name == "nginx.conf"
        for pattern in settings.supervisor_programs.split()
        for path in ROOT.glob(pattern)
    )


def fallback_reason(settings: Settings) -> str | None:
    """Say why settings.run_user cannot run this host's stack (as root), or None."""
    name = settings.run_user
    if runs_nginx(settings) and settings.http_port < unprivileged_port_start():
        return f"nginx as user {name} cannot listen on port {settings.http_port} (below 1024)"
    if (reason := ensure_user(name)) is not None:
        return reason
    return check_access(name, str(nearest_existing(Path(settings.state_dir).parent)))


def resolve(settings: Settings) -> Resolution:
    """Decide who the programs run as: the run user if it can, else the invoking user.

    Only root can switch users; anyone else runs the stack as themselves.
    An empty FIBOD_RUN_USER asks for the invoking user.
    """
    invoking = RunUser.current().name
    wanted = settings.run_user
    if os.geteuid() != 0 or not wanted or wanted == invoking:
        return Resolution(invoking)
    reason = fallback_reason(settings)
    return Resolution(invoking, reason) if reason else Resolution(wanted)
