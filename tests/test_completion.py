"""Completion scripts, run in the shells they are for, and the progress line."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fibod.cli import build_parser
from fibod.client import Progress
from fibod.completion import bash_script, zsh_script
from fibod.progress import ProgressLine, human_bytes, human_seconds

HERE = Path(__file__).resolve().parent
#: Typed line -> what TAB must offer (at least).
EXPECTED = {
    "fibod g": {"get"},
    "fibod ca": {"cache", "cancel"},
    "fibod get --fo": {"--format"},
    "fibod get --format ": {"text", "lines", "binary"},
    "fibod cache ": {"stats", "clear"},
    "fibod tasks --state r": {"running", "ready"},
    "fibod completion ": {"bash", "zsh"},
}


def _bash_offers(script: Path, line: str) -> set[str]:
    words = line.split(" ")
    program = (
        f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; _fibod; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_bash_completes_commands_options_and_their_values(tmp_path: Path) -> None:
    script = tmp_path / "fibod.bash"
    script.write_text(bash_script(build_parser()))
    for line, expected in EXPECTED.items():
        offers = _bash_offers(script, line)
        assert expected <= offers <= expected | {"-h", "--help"}, (line, offers)
    # the value after an option is not taken for a command; a value without choices gets nothing
    assert _bash_offers(script, "fibod --env-file x ca") == {"cache", "cancel"}
    assert _bash_offers(script, "fibod get --from ") == set()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is installed by make deps")
def test_zsh_completes_commands_options_and_their_values(tmp_path: Path) -> None:
    script, out = tmp_path / "_fibod", tmp_path / "offers"
    script.write_text(zsh_script(build_parser()))
    assert subprocess.run(["zsh", "-n", str(script)], check=False).returncode == 0
    lines = list(EXPECTED)
    subprocess.run(
        ["zsh", "-f", str(HERE / "shell" / "zsh_complete.zsh"), str(script), str(out), *lines],
        check=True,
        timeout=60,
    )
    offers: dict[str, set[str]] = {}
    current = ""
    for row in out.read_text().splitlines():
        if row.startswith("== "):
            current = row[3:]
            offers[current] = set()
        elif row:
            offers[current].add(row)
    for line, expected in EXPECTED.items():
        assert expected <= offers[line], (line, offers[line])
        assert offers[line] <= expected | {"-h", "--help"}, (line, offers[line])


def test_the_command_prints_both_scripts() -> None:
    for shell, first in (("bash", "# bash completion"), ("zsh", "#compdef fibod")):
        out = subprocess.run(
            [sys.executable, "-m", "fibod.cli", "completion", shell],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.startswith(first)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_progress_line_shows_bar_sizes_rate_and_eta() -> None:
    # given a download of 1 GB, 250 MB of it already there
    out, clock = io.StringIO(), Clock()
    line = ProgressLine(out, enabled=True, clock=clock)
    line.start(1_000_000_000, 250_000_000)
    # when 250 MB more arrive in 2 s
    clock.now += 2
    line.advance(250_000_000)
    line.finish()
    # then the last state drawn says half, at 125 MB/s, 4 s left
    drawn = out.getvalue().split("\r")[-1]
    assert drawn.startswith("[############............]  50.0% 500.00 MB of 1.00 GB")
    assert "125.00 MB/s, ETA 4 s" in drawn and drawn.endswith("\n")


def test_the_progress_line_says_how_far_the_task_is_and_is_quiet_when_disabled() -> None:
    out = io.StringIO()
    ProgressLine(out, enabled=True).waiting(Progress("running", 0.25, 75))
    assert out.getvalue() == "\rrunning:  25.0% computed, ETA 1 min 15 s"
    quiet = io.StringIO()
    line = ProgressLine(quiet, enabled=False)
    line.waiting(Progress("running", 0.25, 75))
    line.start(10)
    line.advance(10)
    line.finish()
    assert quiet.getvalue() == ""


def test_sizes_and_durations_read_as_people_write_them() -> None:
    assert [human_bytes(n) for n in (999, 1000, 1_045_042_806)] == ["999 B", "1.00 kB", "1.05 GB"]
    assert [human_seconds(s) for s in (None, 0.4, 59.6, 200, 7500)] == [
        "?",
        "0 s",
        "1 min 0 s",
        "3 min 20 s",
        "2 h 5 min",
    ]
