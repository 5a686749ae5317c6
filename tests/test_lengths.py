"""Exact text and payload lengths from logarithms, checked against real digits."""

from __future__ import annotations

import math
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
