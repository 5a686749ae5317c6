"""Exact text and payload lengths from logarithms, checked against real digits."""

from __future__ import annotations

import math
import random
import time
from decimal import Context, Decimal

import gmpy2
import pytest

from fibod import lengths


def test_the_logarithms_are_right_to_80_places() -> None:
    ctx = Context(prec=100)
    sqrt5 = ctx.sqrt(Decimal(5))
    phi = ctx.divide(ctx.add(Decimal(1), sqrt5), Decimal(2))
    assert str(ctx.log10(phi))[:82] == lengths.LOG10_PHI
    assert str(ctx.log10(sqrt5))[:82] == lengths.LOG10_SQRT5


def test_digits_of_every_index_below_60000() -> None:
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)
    for n in range(60_000):
        assert lengths.digits(n) == len(a.digits()), n
        a, b = b, a + b


def _closest_to_a_power_of_ten(stop: int, how_many: int) -> list[int]:
    """Indices n < stop whose log10 F(n) is nearest an integer (either side)."""
    log_phi, log_sqrt5 = math.log10((1 + math.sqrt(5)) / 2), math.log10(math.sqrt(5))
    scored = []
    for n in range(100, stop):
        x = n * log_phi - log_sqrt5
        scored.append((abs(x - round(x)), n))
    scored.sort()
    return [n for _, n in scored[:how_many]]


@pytest.mark.parametrize("n", _closest_to_a_power_of_ten(2_000_000, 4))
def test_digits_where_f_n_comes_closest_to_a_power_of_ten(n: int) -> None:
    assert lengths.digits(n) == len(gmpy2.fib(n).digits())


@pytest.mark.parametrize(("start", "count"), [(0, 1), (0, 5000), (4321, 777), (90_000, 300)])
def test_text_and_payload_lengths_of_runs(start: int, count: int) -> None:
    b, a = gmpy2.fib2(start + 1)
    text = payload = 0
    for _ in range(count):
        d = len(a.digits())
        text += d + 1
        payload += 4 + (d + 1) // 2  # docs/FORMAT.md: a count, then two digits a byte
        a, b = b, a + b
    assert lengths.text_bytes(start, count) == text
    assert lengths.payload_bytes(start, count) == payload


def test_a_negative_index_is_refused() -> None:
    with pytest.raises(ValueError):
        lengths.digits(-1)


def test_closed_form_sums_equal_the_sums_of_digits_of_random_runs() -> None:
    rng = random.Random(12)
    for _ in range(400):
        start = rng.choice([0, 1, 62, 63, 64, 65, rng.randrange(10**7)])
        count = rng.randrange(0, 2_000)
        digits = [lengths.digits(n) for n in range(start, start + count)]
        assert lengths.total_digits(start, count) == sum(digits), (start, count)
        assert lengths.payload_bytes(start, count) == sum(4 + (d + 1) // 2 for d in digits)


def test_a_run_s_length_far_out_costs_no_more_than_near_f0() -> None:
    # sn = 10**7 numbers from F(10**8): a sum of 10**7 floors, computed in closed form
    started = time.perf_counter()
    total = lengths.total_digits(10**8, 10**7)
    assert time.perf_counter() - started < 0.05
    approx = sum(lengths.digits(n) for n in range(10**8, 10**8 + 10**7, 10**4)) * 10**4
    assert abs(total - approx) < approx * 1e-3


@pytest.mark.parametrize(
    ("start", "count", "sep"), [(0, 40, " "), (95, 30, "\n"), (7_000, 20, " ")]
)
def test_every_offset_of_a_run_s_text_maps_to_its_number_and_digit(
    start: int, count: int, sep: str
) -> None:
    # given the run's text from plain ints, and where each number begins in it
    text = "".join(f"{gmpy2.fib(n)}{sep}" for n in range(start, start + count))
    owner, begins = [], []
    for n in range(start, start + count):
        begins.append(len(owner))
        owner += [n] * (len(str(gmpy2.fib(n))) + 1)
    # then every offset maps to the number holding it and the bytes before it in that number
    for offset in range(len(text)):
        n, skip = lengths.number_at(start, count, offset)
        assert (n, skip) == (owner[offset], offset - begins[n - start]), offset
    with pytest.raises(ValueError):
        lengths.number_at(start, count, len(text))
