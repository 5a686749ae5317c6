"""What the `fibod` commands share: strict numbers, whole writes, one-line errors."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable

from fibod.errors import InputError

_DIGITS = re.compile(r"[0-9]+")


def parse_count(text: str, name: str, maximum: int) -> int:
    """Parse a non-negative ASCII decimal integer no larger than `maximum`."""
    stripped = text.strip()
    if not _DIGITS.fullmatch(stripped):
        raise InputError(f"{name} must be a non-negative integer, got {text!r}")
    if len(stripped) > 30 or int(stripped) > maximum:
        raise InputError(f"{name} must be at most {maximum}, got {stripped}")
    return int(stripped)


def write_all(fd: int, blocks: Iterable[memoryview | bytes]) -> None:
    """Write every block to fd, retrying short writes."""
    for block in blocks:
        view = memoryview(block)
        while view:
            written = os.write(fd, view)
            view = view[written:]


class CliParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)
