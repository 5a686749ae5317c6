"""Read the KEY=VALUE env files `make up` writes (var/fibod.env and var/conf/fibod.env).

One parser for the scripts that write them, the health checks, the
integration fixtures and the benchmarks, so they never disagree on quoting.
"""

from __future__ import annotations

import os
import re
import shlex

_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")


class EnvFileError(ValueError):
    """A line of an env file is not KEY=VALUE."""


#: A file name as str or path object (pathlib is not imported: start-up time).
StrPath = str | os.PathLike[str]


def read_env_file(path: StrPath) -> dict[str, str]:
    """Read KEY=VALUE lines (shell quoting allowed, # comments)."""
    values: dict[str, str] = {}
    with open(path) as env_file:
        text = env_file.read()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise EnvFileError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        words = shlex.split(raw, comments=True)
        values[key] = words[0] if words else ""
    return values
