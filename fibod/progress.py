"""One line of progress on a terminal: a task's state, then a download's bar.

Drawn on stderr only when it is a terminal, at most every REDRAW_S, so
`fibod get` stays quiet in pipes, logs and scripts. The ETA of a
download comes from its rate so far; a task's from the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from fibod.client import Progress

#: Seconds between redraws.
REDRAW_S = 0.1
#: Width of the bar, in characters.
BAR_WIDTH = 24


def human_bytes(n: float) -> str:
    """Format a byte count in SI units (1.05 GB), as sizes are quoted elsewhere."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    """Format a duration as 7 s, 3 min 20 s, or 2 h 5 min; ? when unknown."""
    if s is None:
        return "?"
    whole = int(s + 0.5)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class ProgressLine:
    """Redraw one status line in place; do nothing if not enabled."""

    def __init__(
        self, stream: TextIO, enabled: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._enabled = enabled
        self._clock = clock
        self._last_draw = float("-inf")
        self._width = 0
        self._total = 0
        self._done = 0
        self._base = 0
        self._started = 0.0

    def waiting(self, progress: Progress) -> None:
        """Show how far the task is while it is computed."""
        eta = "" if progress.eta_s is None else f", ETA {human_seconds(progress.eta_s)}"
        self._draw(f"{progress.state}: {progress.fraction:6.1%} computed{eta}")

    def start(self, total: int, done: int = 0) -> None:
        """Begin a download of `total` bytes, `done` of them already there."""
        self._total, self._done, self._base = total, done, done
        self._started = self._clock()
        self._draw(self._bar(), force=True)

    def advance(self, n: int) -> None:
        """Count n more bytes received."""
        self._done += n
        self._draw(self._bar())

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self._enabled and self._width:
            if self._total:
                self._draw(self._bar(), force=True)
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0

    def _bar(self) -> str:
        fraction = self._done / self._total if self._total else 1.0
        filled = int(fraction * BAR_WIDTH)
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = (self._done - self._base) / elapsed
        left = (self._total - self._done) / rate if rate > 0 else None
        return (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:6.1%} "
            f"{human_bytes(self._done)} of {human_bytes(self._total)}, "
            f"{human_bytes(rate)}/s, ETA {human_seconds(left)}"
        )

    def _draw(self, text: str, force: bool = False) -> None:
        if not self._enabled:
            return
        now = self._clock()
        if not force and now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        pad = max(self._width - len(text), 0)
        self._stream.write(f"\r{text}{' ' * pad}")
        self._stream.flush()
        self._width = len(text)
