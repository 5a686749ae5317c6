"""Download tools on ready results, through nginx: curl resumes, aria2c splits.

Both are the Debian programs (scripts/deps.sh installs them). What they
save is the whole body, status byte first; the rest must equal the gmpy2
reference. nginx's access log tells which answers were ranges (206).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.stack import VAR
from tests.reference import reference_digest

pytestmark = pytest.mark.integration

#: ~94 MB of text: long enough to cut a download in the middle.
CURL_SN = 30_000
#: ~1 GB of text (F(0)..F(99,999)).
GIGABYTE_SN = 100_000
ACCESS_LOG = VAR / "log" / "nginx-access.log"


def _ready(http, sn: int) -> str:
    task_id = http.submit(sn)
    http.fibod.wait(task_id, timeout_s=180)
    return task_id


def _matches_reference(path: Path, sn: int) -> bool:
    """The file is 0x00, then exactly F(0)..F(sn-1) as text."""
    reference = reference_digest(sn)
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        if file.read(1) != b"\x00":
            return False
        while chunk := file.read(1 << 20):
            hasher.update(chunk)
    return path.stat().st_size == 1 + reference.size and hasher.hexdigest() == reference.sha256


def _answers_for(task_id: str) -> list[int]:
    """Statuses nginx logged for requests naming the task (its log flushes each second)."""
    time.sleep(1.5)
    return [
        int(line.split('" ', 1)[1].split()[0])
        for line in ACCESS_LOG.read_text(errors="replace").splitlines()
        if task_id in line and '" ' in line
    ]


def test_curl_continues_a_cut_download(stack, http, tmp_path: Path) -> None:
    # given a ready result and a download of it cut after about a second
    task_id = _ready(http, CURL_SN)
    url = f"{stack.base_url}/myapp/fibotask?id={task_id}"
    out = tmp_path / "fib.txt"
    cut = subprocess.run(
        ["curl", "-sS", "--limit-rate", "20M", "--max-time", "1", "-o", str(out), url],
        capture_output=True,
        check=False,
    )
    assert cut.returncode == 28, cut.stderr  # "operation timed out": the cut
    assert 0 < out.stat().st_size < 1 + reference_digest(CURL_SN).size
    # when curl is asked to continue it (-C -: from the file's size)
    resumed = subprocess.run(
        ["curl", "-sS", "-C", "-", "-o", str(out), "-w", "%{http_code}", url],
        capture_output=True,
        text=True,
        check=False,
    )
    # then it got the rest as a range, and the file is whole and exact
    assert (resumed.returncode, resumed.stdout) == (0, "206"), resumed.stderr
    assert _matches_reference(out, CURL_SN)


def test_aria2c_fetches_a_gigabyte_over_several_connections(stack, http, tmp_path: Path) -> None:
    # given a ready result of ~1 GB
    task_id = _ready(http, GIGABYTE_SN)
    url = f"{stack.base_url}/myapp/fibotask?id={task_id}"
    # when aria2c fetches it over 4 connections, in ranges of at least 16 MB
    started = time.monotonic()
    done = subprocess.run(
        [
            "aria2c",
            "--quiet=true",
            "--max-connection-per-server=4",
            "--split=4",
            "--min-split-size=16M",
            "--file-allocation=none",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            f"--dir={tmp_path}",
            "--out=fib.txt",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    # then the pieces it put together are the reference, byte for byte
    assert done.returncode == 0, done.stdout + done.stderr
    assert _matches_reference(tmp_path / "fib.txt", GIGABYTE_SN)
    # and it really used ranges: several 206 answers
    statuses = _answers_for(task_id)
    assert statuses.count(206) >= 2, statuses
    print(f"aria2c: 1 GB in {elapsed_s:.1f} s, answers {statuses}")
