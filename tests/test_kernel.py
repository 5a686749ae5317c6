"""The kernel against independent references: ints, gmpy2, identities."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import gmpy2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fibod import _fastfib
from fibod.kernel import FAST, PLAIN, Kernel
from tests.reference import reference_run, reference_text


def joined(blocks) -> bytes:
    return b"".join(bytes(b) for b in blocks)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 10, 63, 64, 65, 1000, 4097, 10**5 + 7])
def test_fib_matches_gmpy2(kernel: Kernel, n: int) -> None:
    assert kernel.fib(n) == gmpy2.fib(n)


@pytest.mark.parametrize("n", [0, 1, 7, 1234, 99_999])
def test_fib_pair_is_consecutive(kernel: Kernel, n: int) -> None:
    lo, hi = kernel.fib_pair(n)
    assert (lo, hi) == (gmpy2.fib(n), gmpy2.fib(n + 1))


@pytest.mark.parametrize("n", [1, 2, 50, 777, 20_001])
def test_cassini_identity_and_twice_the_index(kernel: Kernel, n: int) -> None:
    # Cassini's identity ties three results together without the kernel's own
    # doubling formula; F(2n), what that formula computes, is checked against gmpy2
    prev, cur = kernel.fib(n - 1), kernel.fib(n)
    nxt = kernel.fib(n + 1)
    assert nxt * prev - cur * cur == (-1) ** n
    assert kernel.fib(2 * n) == gmpy2.fib(2 * n)


def test_fib_of_a_negative_index_is_refused(kernel: Kernel) -> None:
    with pytest.raises(ValueError):
        kernel.fib(-1)


@pytest.mark.parametrize(
    ("start", "count"), [(0, 0), (0, 1), (0, 2), (0, 30), (1, 5), (5, 0), (93, 3), (1000, 40)]
)
def test_run_text_matches_plain_ints(kernel: Kernel, start: int, count: int) -> None:
    assert joined(kernel.iter_run_text(start, count)) == reference_text(start, count)


def test_run_text_in_lines_ends_each_number_with_a_newline(kernel: Kernel) -> None:
    assert joined(kernel.iter_run_text(3, 4, b"\n")) == b"2\n3\n5\n8\n"


def test_run_of_3000_matches_plain_ints_in_small_blocks(kernel: Kernel) -> None:
    # blocks far smaller than the run force many resumptions mid-run
    blocks = [bytes(b) for b in kernel.iter_run_text(0, 3000, chunk_bytes=1)]
    assert b"".join(blocks) == reference_text(0, 3000)
    if kernel is FAST:
        assert len(blocks) > 1


def test_run_digit_counts_follow_log_phi(kernel: Kernel) -> None:
    # digits(F(n)) = floor(n log10 phi - log10 sqrt 5) + 1 away from boundaries
    text = joined(kernel.iter_run_text(20_000, 3))
    lengths = [len(t) for t in text.split()]
    assert lengths == [len(str(v)) for v in reference_run(20_000, 3)]
    assert lengths[0] == 4180


# the fixture only picks a kernel: nothing to reset between examples
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=st.integers(0, 3000), count=st.integers(0, 120))
def test_any_run_matches_plain_ints(kernel: Kernel, start: int, count: int) -> None:
    expected = reference_text(start, count)
    assert joined(kernel.iter_run_text(start, count, chunk_bytes=4096)) == expected


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 5000), count=st.integers(0, 60))
def test_both_kernels_encode_check_and_render_payloads_alike(start: int, count: int) -> None:
    fast_payload, fast_digits = FAST.encode_payload(start, count)
    plain_payload, plain_digits = PLAIN.encode_payload(start, count)
    assert fast_payload == plain_payload
    assert fast_digits == plain_digits == sum(len(str(v)) for v in reference_run(start, count))
    assert FAST.check_payload(fast_payload, count) == fast_digits
    assert PLAIN.check_payload(fast_payload, count) == fast_digits
    expected = reference_text(start, count)
    assert FAST.payload_text(fast_payload, count) == expected
    assert PLAIN.payload_text(fast_payload, count) == expected


#: The kernel's add and unpack loops, as `_fastfib.select_simd` numbers them.
SIMD_PATHS = {"portable": 0, "avx2": 1}


@pytest.fixture(params=list(SIMD_PATHS))
def simd_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on one loop path; skip the AVX2 one where it cannot run."""
    want = SIMD_PATHS[request.param]
    if want and not _fastfib.simd_available():
        pytest.skip("no AVX2 path here (CPU without avx2, or built without it): portable only")
    chosen = _fastfib.simd_in_use()
    assert _fastfib.select_simd(want) == want
    try:
        yield request.param
    finally:
        _fastfib.select_simd(chosen)


def cpu_flags() -> set[str]:
    """Return the first CPU's flags from /proc/cpuinfo, not from the kernel."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads CPU flags from Linux")
def test_avx2_path_is_chosen_at_import_exactly_where_the_cpu_has_avx2() -> None:
    # a fresh process: other tests here switch paths back and forth
    probe = "from fibod import _fastfib; print(_fastfib.simd_available(), _fastfib.simd_in_use())"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    expected = "1 1" if "avx2" in cpu_flags() else "0 0"
    assert result.stdout.split() == expected.split()


def test_portable_path_can_be_forced_and_the_best_chosen_again() -> None:
    chosen = _fastfib.simd_in_use()
    try:
        assert _fastfib.select_simd(0) == 0 and _fastfib.simd_in_use() == 0
        assert _fastfib.select_simd(-1) == _fastfib.simd_available()
    finally:
        _fastfib.select_simd(chosen)


def test_run_text_on_each_path_matches_plain_ints(simd_path: str) -> None:
    # each path is checked against the reference, not only against the other
    assert joined(FAST.iter_run_text(5000, 200)) == reference_text(5000, 200)


def test_carry_across_word_boundaries(kernel: Kernel) -> None:
    # F(79) has 17 digits and F(80) 17: runs around 16- and 32-digit sizes
    # exercise the carry out of a 64-bit BCD word and digit growth
    for start in (70, 150, 300):
        assert joined(kernel.iter_run_text(start, 20)) == reference_text(start, 20)


def nines_heavy_decimal() -> st.SearchStrategy[str]:
    """Decimal strings made of long runs of 9s and 0s: worst-case carries."""
    run = st.tuples(st.sampled_from("0123456789"), st.integers(1, 70))
    return st.lists(run, min_size=1, max_size=8).map(
        lambda runs: ("".join(c * n for c, n in runs)).lstrip("0") or "0"
    )


# the fixture only selects a path: nothing to reset between examples
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=nines_heavy_decimal(), b=nines_heavy_decimal())
def test_bcd_add_matches_int_addition(simd_path: str, a: str, b: str) -> None:
    assert _fastfib.add_decimal(a, b) == str(int(a) + int(b))


@pytest.mark.parametrize("digits", [15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129])
def test_bcd_add_carry_ripples_through_every_lane(simd_path: str, digits: int) -> None:
    # 99..9 + 1 carries through every nibble, word and 64-digit block
    assert _fastfib.add_decimal("9" * digits, "1") == "1" + "0" * digits
    half = "45" * (digits // 2) + "4" * (digits % 2)
    assert _fastfib.add_decimal(half, "5" * digits) == str(int(half) + int("5" * digits))


def test_payload_text_of_one_number_of_83595_digits(kernel: Kernel) -> None:
    payload, digits = kernel.encode_payload(400_000, 1)
    text = kernel.payload_text(payload, 1)
    assert text == gmpy2.fib(400_000).digits().encode() + b" "
    assert len(text) == digits + 1
