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


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """Return sum(floor((a*i + b) / m) for i in range(n)), for a, b >= 0, m >= 1.

    The Euclid-like reduction of AtCoder's floor_sum: O(log m) steps.
    """
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b = divmod(y_max, m)
        m, a = a, m


def _small_split(start: int, count: int) -> tuple[range, int, int]:
    """Split a run into its indices below _SMALL and the (start, count) above."""
    small = range(start, min(start + count, _SMALL))
    big_start = max(start, _SMALL)
    return small, big_start, max(0, start + count - big_start)


def total_digits(start: int, count: int) -> int:
    """Return the digits of F(start) .. F(start+count-1) together.

    A closed form of the sum of `digits(n)` (a sum of floors of a linear
    function), so any run's length costs microseconds, however long.
    """
    small, big_start, big_count = _small_split(start, count)
    total = sum(_SMALL_DIGITS[n] for n in small)
    if big_count:
        total += big_count + _floor_sum(big_count, 1 << _SHIFT, _L, big_start * _L - _C)
    return total


def text_bytes(start: int, count: int) -> int:
    """Return the text length of the run with one separator after each number."""
    return total_digits(start, count) + count


def payload_bytes(start: int, count: int) -> int:
    """Return the packed-BCD payload size of the run (docs/FORMAT.md).

    Each number is a 4-byte digit count and its digits two to a byte:
    4 + (d + 1) // 2 bytes, where (d + 1) // 2 = floor((x + 2) / 2) for
    d = floor(x) + 1, again a sum of floors.
    """
    small, big_start, big_count = _small_split(start, count)
    total = sum(4 + (_SMALL_DIGITS[n] + 1) // 2 for n in small)
    if big_count:
        shift = 1 << (_SHIFT + 1)
        total += 4 * big_count + _floor_sum(big_count, shift, _L, big_start * _L - _C + shift)
    return total


def number_at(start: int, count: int, offset: int, sep_bytes: int = 1) -> tuple[int, int]:
    """Find which number of a run's text holds byte `offset`, and where in it.

    Returns (n, skip): F(n) starts `skip` bytes before the offset (its
    separator, if sep_bytes, counts as part of it). A binary search over
    closed-form lengths: nothing before the offset is generated.
    """
    if not 0 <= offset < total_digits(start, count) + sep_bytes * count:
        raise ValueError(f"offset {offset} is outside the run's text")
    lo, hi = 0, count - 1  # the answer is start + k for the largest k with prefix <= offset
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if total_digits(start, mid) + sep_bytes * mid <= offset:
            lo = mid
        else:
            hi = mid - 1
    return start + lo, offset - (total_digits(start, lo) + sep_bytes * lo)
