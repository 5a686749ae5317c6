"""Strict parsing of request parameters, shared by both web apps.

Query strings are parsed here rather than by Falcon so that repeated,
blank and non-ASCII values are seen and refused with a plain reason.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fibod.errors import InputError
from fibod.protocol import FORMATS

_ASCII_DIGITS = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")


def query_params(query_string: str) -> dict[str, list[str]]:
    """Split a query string into name -> all values, blanks kept."""
    params: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InputError("query string is not valid UTF-8") from None
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def single(params: dict[str, list[str]], name: str, required: bool = True) -> str | None:
    """Return the one value of a parameter; refuse repeats and absence."""
    values = params.get(name, [])
    if len(values) > 1:
        raise InputError(f"parameter {name} given {len(values)} times; give it once")
    if not values:
        if required:
            raise InputError(f"parameter {name} is required")
        return None
    return values[0]


def parse_natural(text: str, name: str, maximum: int, minimum: int = 0) -> int:
    """Accept ASCII decimal digits only, minimum <= value <= maximum."""
    if not _ASCII_DIGITS.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InputError(f"{name} must be a non-negative integer in ASCII digits, got {shown!r}")
    # leading zeros are stripped first: int() of more than 4,300 digits raises
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(maximum)) or int(digits) > maximum:
        raise InputError(f"{name} must be at most {maximum}, got {text[:40]}")
    if int(digits) < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {text[:40]}")
    return int(digits)


def parse_sn(text: str, maximum: int) -> int:
    """Accept ASCII decimal digits only, 0 <= sn <= maximum."""
    return parse_natural(text, "sn", maximum)


def parse_from(text: str | None, maximum: int) -> int:
    """Accept the first index of a run (absent: 0), 0 <= from <= maximum."""
    return 0 if text is None else parse_natural(text, "from", maximum)


def parse_wait(text: str | None, maximum_s: int) -> float:
    """Accept a long-poll duration in seconds; clamp it to the maximum."""
    if text is None or text == "":
        return 0.0
    if not _SECONDS.fullmatch(text):
        raise InputError(f"wait must be a number of seconds like 5 or 0.5, got {text[:40]!r}")
    return min(float(text), float(maximum_s))


def parse_format(text: str | None) -> str:
    """Accept one of the output formats (default text)."""
    if text is None or text == "":
        return "text"
    if text not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {text[:40]!r}")
    return text


def parse_bounded(name: str, text: str | None, default: int, maximum: int) -> int:
    """Accept an optional non-negative integer parameter up to maximum (absent: default)."""
    if text is None:
        return default
    if not _ASCII_DIGITS.fullmatch(text) or len(text) > len(str(maximum)) or int(text) > maximum:
        raise InputError(f"{name} must be an integer from 0 to {maximum}, got {text[:40]!r}")
    return int(text)
