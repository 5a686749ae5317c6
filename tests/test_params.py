"""Strict request parameter parsing."""

from __future__ import annotations

import pytest

from fibod.errors import InputError
from fibod.ids import is_genuine, new_task_id, parse_task_id
from fibod.params import parse_format, parse_sn, parse_wait, query_params, single


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("1", 1), ("200000", 200000), ("007", 7)])
def test_sn_accepts_ascii_digits(text: str, value: int) -> None:
    assert parse_sn(text, 200_000) == value


@pytest.mark.parametrize(
    "text",
    [
        *("", "-1", "1.5", "1e3", " 5", "5 ", "+5", "0x10", "200001", "9" * 400, "abc"),
        "\u0663",  # ARABIC-INDIC DIGIT THREE
        "\uff11\uff12",  # FULLWIDTH DIGITS ONE TWO
    ],
)
def test_sn_refuses_everything_else(text: str) -> None:
    with pytest.raises(InputError):
        parse_sn(text, 200_000)


def test_repeated_and_missing_params_are_refused() -> None:
    params = query_params("sn=1&sn=2&x=")
    with pytest.raises(InputError, match="2 times"):
        single(params, "sn")
    with pytest.raises(InputError, match="required"):
        single(params, "id")
    assert single(params, "x") == ""
    assert single(params, "y", required=False) is None


def test_non_utf8_query_is_refused() -> None:
    with pytest.raises(InputError):
        query_params("sn=%ff")


def test_wait_is_clamped_and_strict() -> None:
    assert parse_wait(None, 30) == 0
    assert parse_wait("0.5", 30) == 0.5
    assert parse_wait("999", 30) == 30
    for bad in ("-1", "abc", "1e3", "nan"):
        with pytest.raises(InputError):
            parse_wait(bad, 30)


def test_format_defaults_to_text_and_refuses_unknown_names() -> None:
    assert parse_format(None) == "text"
    assert parse_format("binary") == "binary"
    with pytest.raises(InputError):
        parse_format("xml")


def test_task_ids_are_32_lowercase_hex_digits_that_carry_their_time_and_a_mac() -> None:
    task_id = new_task_id(1_700_000_000_000, b"key")
    assert len(task_id) == 32 and parse_task_id(task_id) == task_id
    assert int(task_id[:12], 16) == 1_700_000_000_000
    assert is_genuine(task_id, b"key")
    assert not is_genuine(task_id, b"another key")
    # any change to time, random part or MAC breaks it
    for i in (0, 11, 12, 19, 20, 31):
        changed = task_id[:i] + ("0" if task_id[i] != "0" else "1") + task_id[i + 1 :]
        assert not is_genuine(changed, b"key"), i
    bad_ids = ("", task_id.upper(), task_id + "0", task_id[:-1], task_id[:21], "g" * 32)
    for bad in (*bad_ids, task_id + "\n"):
        with pytest.raises(InputError, match="32 lowercase hex digits"):
            parse_task_id(bad)


def test_legacy_ids_of_20_hex_digits_are_well_formed_but_never_genuine() -> None:
    legacy = new_task_id(1_700_000_000_000, b"key")[:20]
    assert parse_task_id(legacy) == legacy
    assert not is_genuine(legacy, b"key")


def test_sn_with_thousands_of_leading_zeros_is_read_as_its_value() -> None:
    assert parse_sn("0" * 5000 + "7", 100) == 7
    assert parse_sn("0" * 5000, 100) == 0
    with pytest.raises(InputError, match="at most 100"):
        parse_sn("0" * 5000 + "101", 100)
