"""The `fibod` command as a user runs it: a real subprocess."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import gmpy2
import pytest

from fibod import _fastfib
from tests.reference import reference_digest, reference_text

FIBOD = [sys.executable, "-m", "fibod.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*FIBOD, *args], capture_output=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_seq_5_is_the_original_wire_format() -> None:
    assert run("seq", "5").stdout == b"0 1 1 2 3 "


def test_seq_zero_prints_nothing() -> None:
    result = run("seq", "0")
    assert (result.returncode, result.stdout) == (0, b"")


def test_seq_from_and_lines() -> None:
    assert run("seq", "3", "--from", "10", "--format", "lines").stdout == b"55\n89\n144\n"


def test_seq_formats_are_named_as_in_the_http_api() -> None:
    # `format=text` is the HTTP API's name for space-separated numbers
    assert run("seq", "5", "--format", "text").stdout == b"0 1 1 2 3 "


def test_seq_2000_matches_plain_ints() -> None:
    assert run("seq", "2000").stdout == reference_text(0, 2000)


def test_seq_from_large_index_matches_gmpy2() -> None:
    values = run("seq", "3", "--from", "250000").stdout.split()
    assert [int(v) for v in values] == [gmpy2.fib(250_000 + i) for i in range(3)]


def test_fib_prints_one_number() -> None:
    assert run("fib", "1000").stdout == str(gmpy2.fib(1000)).encode() + b"\n"
    assert run("fib", "0").stdout == b"0\n"


@pytest.mark.parametrize(
    "args",
    [
        ("seq", "-1"),
        ("seq", "1.5"),
        ("seq", "abc"),
        ("seq", ""),
        ("seq", "\u0665"),  # ARABIC-INDIC DIGIT FIVE: int() takes it, we do not
        ("seq", "1_000"),
        ("seq", "200001"),
        ("seq", "5", "--from", "-3"),
        ("seq", "5", "--format", "csv"),
        ("seq", "5", "--format", "spaces"),  # the old name of text
        ("fib", "x"),
        ("fib", "1" * 40),
        ("nosuch",),
        (),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fibod: ")


def test_configured_maximum_is_honoured() -> None:
    result = run("seq", "11", env={"FIBOD_MAX_SN": "10"})
    assert result.returncode == 2 and b"at most 10" in result.stderr
    assert run("seq", "10", env={"FIBOD_MAX_SN": "10"}).returncode == 0


def test_closed_pipe_ends_quietly() -> None:
    # given a reader that takes 10 bytes and leaves
    proc = subprocess.Popen(
        f"{sys.executable} -m fibod.cli seq 100000 | head -c 10",
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        executable="/bin/bash",
    )
    # when the writer hits the closed pipe
    out, err = proc.communicate(timeout=60)
    # then it stops without a traceback
    assert out == b"0 1 1 2 3 "
    assert err == b""


#: `fibod seq 100000`, the output the benchmarks time, with one SIMD path
#: chosen first: the command's own code (fibod.cli.main) in a fresh process.
SEQ_100000_ON_PATH = (
    "import sys; from fibod import _fastfib; from fibod.cli import main; "
    "want = int(sys.argv[1]); assert _fastfib.select_simd(want) == want; "
    "raise SystemExit(main(['seq', '100000']))"
)


@pytest.mark.slow
@pytest.mark.parametrize("path", [0, 1], ids=["portable", "avx2"])
def test_seq_100000_is_gmpy2s_text_on_each_simd_path(path: int) -> None:
    if path and not _fastfib.simd_available():
        pytest.skip("no AVX2 path here (CPU without avx2, or built without it)")
    # given F(0)..F(99,999) from gmpy2 additions and .digits(), hashed
    reference = reference_digest(100_000)
    # when the command writes its 1.05 GB into a pipe on that path
    proc = subprocess.Popen(
        [sys.executable, "-c", SEQ_100000_ON_PATH, str(path)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    hasher, size = hashlib.sha256(), 0
    while chunk := proc.stdout.read(1 << 22):
        hasher.update(chunk)
        size += len(chunk)
    # then every byte is gmpy2's
    assert proc.wait(timeout=60) == 0
    assert (size, hasher.hexdigest()) == (reference.size, reference.sha256)
