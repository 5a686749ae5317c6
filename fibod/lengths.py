"""Exact lengths of Fibonacci runs as text and as packed BCD, without computing them.

F(n) has floor(n * log10(phi) - log10(sqrt 5)) + 1 decimal digits for
n >= 2 (from Binet's formula, F(n) = round(phi**n / sqrt 5)). The two
logarithms are kept as integers scaled by 2**192, so the floor is exact
for any index this service can see: the scaled error grows as n * 2**-192,
while log10 F(n) differs from n * log10(phi) - log10(sqrt 5) by less than
phi**(-2n), and no F(n) of n >= 2 lies closer to a power of ten than
these bounds (the tests check every n below 60,000 and the closest cases
up to 2 * 10**6 against exact digits). Small indices are counted directly.

So a task's text length, a binary answer's Content-Length, and which
segment and digit hold any byte offset are known before any number is.
"""

from __future__ import annotations

from functools import lru_cache

#: Bits of the fixed-point logarithms.
_SHIFT = 192
#: log10((1 + sqrt 5) / 2) and log10(sqrt 5) to 80 places (tests recompute them).
LOG10_PHI = "0.20898764024997873376927208923755541682245923991821095353928756139741048534967459"
LOG10_SQRT5 = "0.34948500216800940239313055263775348661590505926894572934478626943644590536278774"
#: Below this index digits are counted from the numbers themselves.
_SMALL = 64


def fixed_point(decimal_text: str) -> int:
    """Scale a decimal fraction in [0, 1) by 2**_SHIFT, rounded down."""
    whole, _, frac = decimal_text.partition(".")
    if whole != "0":
        raise ValueError(f"not a fraction below 1: {decimal_text}")
    return (int(frac) << _SHIFT) // 10 ** len(frac)


_L = fixed_point(LOG10_PHI)
_C = fixed_point(LOG10_SQRT5)


def _small_digits() -> tuple[int, ...]:
    out, a, b = [], 0, 1
    for _ in range(_SMALL):
        out.append(len(str(a)))
        a, b = b, a + b
    return tuple(out)


_SMALL_DIGITS = _small_digits()


def digits(n: int) -> int:
    """Return the number of decimal digits of F(n) (F(0) = 0 has one)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    if n < _SMALL:
        return _SMALL_DIGITS[n]
    return ((n * _L - _C) >> _SHIFT) + 1


@lru_cache(maxsize=4096)
def total_digits(start: int, count: int) -> int:
    """Return the digits of F(start) .. F(start+count-1) together."""
    return sum(digits(n) for n in range(start, start + count))


def text_bytes(start: int, count: int) -> int:
    """Return the text length of the run with one separator after each number."""
    return total_digits(start, count) + count


@lru_cache(maxsize=4096)
def payload_bytes(start: int, count: int) -> int:
    """Return the packed-BCD payload size of the run (docs/FORMAT.md).

    Each number is a 4-byte digit count and its digits two to a byte.
    """
    return sum(4 + (digits(n) + 1) // 2 for n in range(start, start + count))
