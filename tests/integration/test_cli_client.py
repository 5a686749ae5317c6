"""`fibod get`, status, tasks and cancel as a user runs them, against the real stack.

The command runs from this checkout without --url or --env-file: after
`make up` it finds the stack's settings (and so its URL) by itself.
"""

from __future__ import annotations

import hashlib
import os
import pty
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.stack import ROOT, wait_for
from tests.reference import gmpy2_text, reference_digest, reference_text

pytestmark = pytest.mark.integration

FIBOD = str(ROOT / ".venv" / "bin" / "fibod")
#: ~1 GB of text: long enough to cut its download.
BIG_SN = 100_000


def fibod(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run the command as a user would, from another folder."""
    return subprocess.run(
        [FIBOD, *args], capture_output=True, timeout=timeout_s, cwd="/", check=False
    )


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def test_get_writes_the_sequence_to_stdout_quietly_when_not_a_terminal() -> None:
    result = fibod("get", "10")
    assert (result.returncode, result.stdout, result.stderr) == (0, reference_text(0, 10), b"")


def test_get_a_run_from_a_in_lines_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "run.txt"
    result = fibod("get", "300", "--from", "50000", "--format", "lines", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == gmpy2_text(50_000, 300, "\n")
    assert not (tmp_path / "run.txt.fibod").exists()  # the record goes once the file is whole


def test_get_shows_a_progress_bar_and_eta_on_a_terminal(tmp_path: Path) -> None:
    # given stderr on a terminal
    controller, terminal = pty.openpty()
    out = tmp_path / "fib.txt"
    proc = subprocess.Popen(
        [FIBOD, "get", "30000", "-o", str(out)], stderr=terminal, stdout=terminal, cwd="/"
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    # then the bar, the sizes and an ETA were drawn, and the file is right
    assert proc.wait(60) == 0, shown
    last = shown.rstrip(b"\r\n").split(b"\r")[-1]
    assert b"[########################] 100.0%" in last, shown[-400:]
    assert b"B/s, ETA" in last and b"94.08 MB of 94.08 MB" in last
    assert _sha256(out) == reference_digest(30_000).sha256


def test_a_cut_download_is_resumed_with_a_range_checked_by_the_etag(tmp_path: Path) -> None:
    # given a download of ~1 GB killed once 100 MB were written
    out = tmp_path / "fib.txt"
    record = tmp_path / "fib.txt.fibod"
    proc = subprocess.Popen([FIBOD, "get", str(BIG_SN), "-o", str(out)], cwd="/")
    try:
        wait_for(
            lambda: out.exists() and out.stat().st_size > 100 << 20,
            120,
            "100 MB downloaded",
            step_s=0.01,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    cut_at = out.stat().st_size
    assert record.exists() and cut_at < reference_digest(BIG_SN).size
    # when the same command runs again with --resume
    started = time.monotonic()
    result = fibod("get", str(BIG_SN), "-o", str(out), "--resume")
    # then it continues where the file ends, and the file is whole and exact
    assert result.returncode == 0, result.stderr
    assert b"starting over" not in result.stderr
    assert _sha256(out) == reference_digest(BIG_SN).sha256
    assert not record.exists()
    print(f"resumed at {cut_at} bytes, done in {time.monotonic() - started:.1f} s")


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    assert fibod("get", "10", "--resume").returncode == 2  # stdout cannot be continued
    out = tmp_path / "other.txt"
    out.write_bytes(b"not ours")
    result = fibod("get", "10", "-o", str(out), "--resume")
    assert result.returncode == 2 and b"no cut download of it is recorded" in result.stderr
    assert out.read_bytes() == b"not ours"


def test_status_tasks_and_cancel(http) -> None:
    # given a ready task and a long one (~12 GB of text, far from anything stored)
    ready = http.submit(1000)
    http.fibod.wait(ready, timeout_s=60)
    running = http.submit(BIG_SN, 600_000)
    # then status shows what it is, tasks lists them newest first, cancel cancels
    status = fibod("status", ready)
    assert status.returncode == 0
    assert b"state     ready" in status.stdout and b"1000 from F(0)" in status.stdout
    listed = fibod("tasks", "--limit", "2").stdout.decode().splitlines()
    assert [line.split()[0] for line in listed] == [running, ready]
    cancelled = fibod("cancel", running)
    assert (cancelled.returncode, cancelled.stdout) == (0, f"{running} cancelled\n".encode())
    # and what cannot be done says why, in one line, with its exit status
    again = fibod("cancel", ready)
    assert again.returncode == 1 and b"already ready" in again.stderr
    unknown = fibod("status", "0" * 32)
    assert unknown.returncode == 1 and b"no task with id" in unknown.stderr
    malformed = fibod("status", "xyz")
    assert malformed.returncode == 2 and b"malformed task id" in malformed.stderr
    gone = fibod("get", "10", "--url", "http://127.0.0.1:1")
    assert gone.returncode == 75 and b"cannot reach" in gone.stderr
    assert len(gone.stderr.splitlines()) == 1


def test_version_and_help_with_examples() -> None:
    version = fibod("--version")
    assert version.returncode == 0 and version.stdout.startswith(b"fibod 0.")
    for command in ("get", "status", "tasks", "cancel"):
        helped = fibod(command, "--help")
        assert helped.returncode == 0 and b"examples:" in helped.stdout
    assert b"FIBOD_MAX_SN" in fibod("get", "--help").stdout
