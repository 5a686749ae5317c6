"""The segment format: round trips, damage detection, layout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibod.errors import SegmentError
from fibod.kernel import Kernel
from fibod.segments import (
    HEADER_BYTES,
    SegmentLayout,
    encode_segment,
    payload_of,
    read_header,
    validate_segment,
)
from tests.reference import reference_run, reference_text, segment_numbers_by_hand


def test_segment_round_trip_holds_the_run(kernel: Kernel) -> None:
    seg = encode_segment(100, 50, kernel)
    header = validate_segment(seg, kernel)
    assert (header.start, header.count) == (100, 50)
    assert header.text_bytes == len(reference_text(100, 50))
    assert segment_numbers_by_hand(seg) == reference_run(100, 50)


def test_empty_segment_is_valid_and_renders_nothing(kernel: Kernel) -> None:
    seg = encode_segment(7, 0, kernel)
    assert validate_segment(seg, kernel).count == 0
    assert segment_numbers_by_hand(seg) == []
    assert kernel.payload_text(payload_of(seg, read_header(seg)), 0) == b""


def test_both_kernels_write_identical_segments() -> None:
    from fibod.kernel import FAST, PLAIN

    assert encode_segment(12345, 77, FAST) == encode_segment(12345, 77, PLAIN)


@pytest.mark.parametrize("cut", [0, 1, 10, HEADER_BYTES, HEADER_BYTES + 3, -1, -8, -9])
def test_truncated_segment_is_named(kernel: Kernel, cut: int) -> None:
    seg = encode_segment(0, 40, kernel)
    with pytest.raises(SegmentError, match="truncated"):
        validate_segment(seg[:cut], kernel)


def test_trailing_bytes_are_refused(kernel: Kernel) -> None:
    with pytest.raises(SegmentError, match="trailing"):
        validate_segment(encode_segment(0, 3, kernel) + b"\0", kernel)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (0, "magic"),
        (4, "version"),
        (5, "encoding"),
        (HEADER_BYTES + 5, "checksum"),
        (-1, "checksum"),
    ],
)
def test_corruption_is_named(kernel: Kernel, offset: int, message: str) -> None:
    seg = bytearray(encode_segment(50, 10, kernel))
    seg[offset] ^= 0x01
    with pytest.raises(SegmentError, match=message):
        validate_segment(bytes(seg), kernel)


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, 2000),
    count=st.integers(1, 30),
    data=st.data(),
)
def test_any_single_byte_flip_is_detected(start: int, count: int, data: st.DataObject) -> None:
    from fibod.kernel import FAST

    seg = bytearray(encode_segment(start, count, FAST))
    pos = data.draw(st.integers(0, len(seg) - 1))
    bit = data.draw(st.integers(0, 7))
    seg[pos] ^= 1 << bit
    with pytest.raises(SegmentError):
        validate_segment(bytes(seg), FAST)


def test_bad_digit_with_valid_checksum_is_named(kernel: Kernel) -> None:
    # a writer bug (not transport damage) must still be caught: rebuild the
    # checksum over a payload holding a nibble 0xA
    import xxhash

    from fibod.segments import TRAILER

    seg = bytearray(encode_segment(200, 3, kernel))
    seg[HEADER_BYTES + 4] = 0xA1
    body = bytes(seg[:-8])
    seg[-8:] = TRAILER.pack(xxhash.xxh3_64_intdigest(body))
    with pytest.raises(SegmentError, match="not a decimal digit"):
        validate_segment(bytes(seg), kernel)


def test_read_header_checks_the_length_but_not_the_payload() -> None:
    # given a segment with a damaged payload
    seg = bytearray(encode_segment(3, 4))
    seg[HEADER_BYTES + 5] ^= 0x01
    # then its header still reads, only validation finds the damage
    assert read_header(bytes(seg)).payload_bytes == len(seg) - 40
    with pytest.raises(SegmentError, match="checksum"):
        validate_segment(bytes(seg))
    with pytest.raises(SegmentError, match="truncated"):
        read_header(bytes(seg[:-1]))


@pytest.mark.parametrize("segment_bytes", [64, 4096, 2 * 1024 * 1024])
def test_layout_tiles_indices_without_gaps(segment_bytes: int) -> None:
    layout = SegmentLayout(segment_bytes)
    expected_start = 0
    for j in range(200):
        start, count = layout.bounds(j)
        assert start == expected_start and count >= 1
        assert layout.index_of(start) == j
        assert layout.index_of(start + count - 1) == j
        expected_start = start + count


def test_layout_keeps_segments_near_target_size() -> None:
    from fibod.kernel import FAST

    layout = SegmentLayout(64 * 1024)
    sizes = [len(encode_segment(*layout.bounds(j), FAST)) for j in (1, 5, 20, 60)]
    assert all(32 * 1024 < s < 96 * 1024 for s in sizes), sizes


@pytest.mark.parametrize("sn", [0, 1, 2, 1000, 6000, 7000, 123_457])
def test_covering_holds_exactly_the_prefix(sn: int) -> None:
    layout = SegmentLayout(2 * 1024 * 1024)
    js = layout.covering(sn)
    if sn == 0:
        assert len(js) == 0
        return
    first, _ = layout.bounds(js[0])
    last_start, last_count = layout.bounds(js[-1])
    assert first == 0
    assert last_start <= sn - 1 < last_start + last_count


@pytest.mark.parametrize("count", [0, 1, 17, 50])
def test_a_checked_payload_renders_as_one_exact_buffer(kernel: Kernel, count: int) -> None:
    seg = encode_segment(300, 50, kernel)
    header = validate_segment(seg, kernel)
    text = kernel.payload_text(payload_of(seg, header), count, b"\n")
    assert bytes(text) == reference_text(300, count, "\n")
