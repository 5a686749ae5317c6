"""Read the KEY=VALUE env files `make up` writes (var/fibod.env and var/conf/fibod.env).

One parser for the scripts that write them, the health checks, the
integration fixtures and the benchmarks, so they never disagree on quoting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")


class EnvFileError(ValueError):
    """A line of an env file is not KEY=VALUE."""


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines (shell quoting allowed, # comments)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise EnvFileError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        words = shlex.split(raw, comments=True)
        values[key] = words[0] if words else ""
    return values
