"""Byte ranges, validators and the byte layout of ready bodies, without servers."""

from __future__ import annotations

import random

import pytest

from fibod.errors import RangeNotSatisfiableError
from fibod.fetch import FetchResource
from fibod.kernel import get_kernel
from fibod.offsets import RENDER_PART_BYTES, ResultBody, text_parts
from fibod.ranges import (
    ByteRange,
    http_date,
    if_range_allows,
    none_match,
    parse_range,
    result_etag,
)
from fibod.segments import SegmentLayout, encode_segment, read_header
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=10-19", ByteRange(10, 19)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=90-5000", ByteRange(90, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-500", ByteRange(0, 99)),
        ("bytes = 5 - 6", ByteRange(5, 6)),
        (None, None),
        ("bytes=0-1,5-6", None),  # several ranges: ignored, the whole body is sent
        ("items=0-5", None),
        ("bytes=5-2", None),
        ("bytes=-", None),
        ("bytes=abc", None),
    ],
)
def test_single_ranges_are_read_and_others_ignored(header, expected) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=" + "9" * 30 + "-"]
)
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError) as info:
        parse_range(header, 100)
    assert info.value.length == 100 and info.value.http_status == 416


def test_the_etag_names_what_the_bytes_depend_on() -> None:
    tags = {
        result_etag("text", 0, 10, 4096),
        result_etag("text", 0, 11, 4096),
        result_etag("text", 1, 10, 4096),
        result_etag("lines", 0, 10, 4096),
        result_etag("binary", 0, 10, 4096),
        result_etag("binary", 0, 10, 8192),
    }
    assert len(tags) == 6
    # text does not depend on the segment size; binary does
    assert result_etag("text", 0, 10, 4096) == result_etag("text", 0, 10, 8192)
    assert all(tag.startswith('"') and tag.endswith('"') for tag in tags)


def test_validators_compare_as_the_rfc_says() -> None:
    tag = result_etag("text", 0, 10, 4096)
    assert none_match(tag, tag) and none_match(f'"x", W/{tag}', tag) and none_match("*", tag)
    assert not none_match('"x"', tag) and not none_match(None, tag)
    finished = 1_700_000_000_123
    assert if_range_allows(None, tag, finished)
    assert if_range_allows(tag, tag, finished)
    assert not if_range_allows(f"W/{tag}", tag, finished)  # If-Range compares strongly
    assert not if_range_allows('"v1-text-0-11"', tag, finished)
    assert if_range_allows(http_date(finished), tag, finished)
    assert not if_range_allows(http_date(finished - 5000), tag, finished)
    assert not if_range_allows("not a date", tag, finished)


def _body_bytes(body: ResultBody, first: int, last: int) -> bytes:
    """Assemble bytes first..last from the pieces, rendering from plain ints."""
    out = b"\x00" if first == 0 else b""
    sep = "\n" if body.fmt == "lines" else " "
    for piece in body.pieces(first, last):
        if body.fmt == "binary":
            segment = encode_segment(*LAYOUT.bounds(piece.j))
            out += segment[piece.skip : piece.skip + piece.size]
        else:
            text = reference_text(piece.first, piece.count, sep)
            out += text[piece.skip : piece.skip + piece.size]
    return out


@pytest.mark.parametrize(("start", "sn", "fmt"), [(0, 3000, "text"), (1234, 900, "lines")])
def test_any_range_of_a_text_body_is_assembled_from_its_pieces(start, sn, fmt) -> None:
    # given the whole body from plain ints
    whole = b"\x00" + reference_text(start, sn, "\n" if fmt == "lines" else " ")
    body = ResultBody(LAYOUT, start, sn, fmt)
    assert body.length == len(whole)
    assert _body_bytes(body, 0, body.length - 1) == whole
    # then any range of it comes out of the pieces, each piece within one segment
    rng = random.Random(sn)
    for _ in range(60):
        first = rng.randrange(body.length)
        last = rng.randrange(first, min(body.length, first + rng.choice([1, 50, 5000, 10**6])))
        assert _body_bytes(body, first, last) == whole[first : last + 1], (first, last)


def test_any_range_of_a_binary_body_is_a_slice_of_its_segments() -> None:
    body = ResultBody(LAYOUT, 500, 2000, "binary")
    whole = b"\x00" + b"".join(encode_segment(*LAYOUT.bounds(j)) for j in body.js)
    assert body.length == len(whole)
    for first, last in [(0, 0), (1, 40), (3, len(whole) - 1), (4100, 9000), (len(whole) - 1,) * 2]:
        assert _body_bytes(body, first, last) == whole[first : last + 1]


def test_the_body_of_no_numbers_is_the_status_byte() -> None:
    body = ResultBody(LAYOUT, 77, 0, "text")
    assert (body.length, list(body.pieces())) == (1, [])


@pytest.mark.parametrize(
    ("first", "count", "limit"),
    [(0, 3000, 4096), (0, 3000, 300_000), (2500, 400, 2000), (0, 5, 1), (777, 0, 4096)],
)
def test_text_parts_cover_the_run_in_runs_that_fit(first: int, count: int, limit: int) -> None:
    parts = list(text_parts(first, count, 1, limit))
    # the runs follow one another and cover exactly the numbers asked for
    assert [n for n, k in parts for n in range(n, n + k)] == list(range(first, first + count))
    for n, k in parts:
        size = len(reference_text(n, k))
        assert size <= limit or k == 1, (n, k, size)
    if count and limit >= 4096:  # and they are not needlessly small
        sizes = [len(reference_text(n, k)) for n, k in parts[:-1]]
        assert all(size > limit // 2 for size in sizes), sizes


def test_a_piece_is_rendered_in_parts_that_make_its_exact_bytes() -> None:
    kernel = get_kernel()
    layout = SegmentLayout(2 << 20)  # the service's: pieces of several parts
    sn = 9000
    body = ResultBody(layout, 0, sn, "text")
    whole = b"\x00" + reference_text(0, sn)
    segments = {j: encode_segment(*layout.bounds(j), kernel) for j in body.js}
    rng = random.Random(sn)
    ranges = [(1, body.length - 1)] + [
        tuple(sorted(rng.randrange(1, body.length) for _ in range(2))) for _ in range(8)
    ]
    for first, last in ranges:
        parts = [
            part
            for piece in body.pieces(first, last)
            for part in FetchResource._render(
                piece,
                segments[piece.j],
                read_header(segments[piece.j]),
                "text",
                kernel,
            )
        ]
        assert b"".join(parts) == whole[first : last + 1], (first, last)
        assert max(len(part) for part in parts) <= RENDER_PART_BYTES
        if (first, last) == (1, body.length - 1):  # the whole run came in parts, not pieces
            assert len(parts) > 2 * len(body.js)
