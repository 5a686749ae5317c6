"""The planner: which segments a task needs, claims, lowest-first compute."""

from __future__ import annotations

import pytest

from fibod import keys, planner
from fibod.segments import SegmentLayout, encode_segment, read_header
from fibod.testing import MemorySequenceStore
from tests.reference import reference_text

LAYOUT = SegmentLayout(4096)  # small segments: many of them for small sn


def test_task_segments_cover_exactly_sn() -> None:
    for sn in (1, 2, 10, 100, 1000, 5000):
        js = planner.task_segments(LAYOUT, sn)
        first, _ = LAYOUT.bounds(js[0])
        last_start, last_count = LAYOUT.bounds(js[-1])
        assert first == 0
        assert last_start < sn <= last_start + last_count
    assert planner.task_segments(LAYOUT, 0) == []


@pytest.mark.parametrize(("start", "sn"), [(1, 1), (7, 500), (1234, 3000), (60_000, 40)])
def test_task_segments_of_a_run_from_a_cover_exactly_it(start: int, sn: int) -> None:
    js = planner.task_segments(LAYOUT, sn, start)
    first, _ = LAYOUT.bounds(js[0])
    last_start, last_count = LAYOUT.bounds(js[-1])
    assert first <= start < LAYOUT.start(js[0] + 1)
    assert last_start < start + sn <= last_start + last_count
    assert js == list(range(js[0], js[-1] + 1))
    assert sum(planner.run_part(LAYOUT, j, sn, start)[1] for j in js) == sn


@pytest.mark.parametrize("start", [0, 777])
def test_bytes_done_counts_only_the_run_s_text(start: int) -> None:
    # given a task whose first and last segments extend beyond its run
    sn = 1000
    js = planner.task_segments(LAYOUT, sn, start)
    # then all present means exactly the run's text, none present means 0
    assert planner.bytes_done(LAYOUT, sn, js, start) == len(reference_text(start, sn))
    assert planner.bytes_done(LAYOUT, sn, [], start) == 0
    lo, count = planner.run_part(LAYOUT, js[0], sn, start)
    assert planner.bytes_done(LAYOUT, sn, js[:1], start) == len(reference_text(lo, count))


@pytest.mark.parametrize(
    ("partitions", "own", "missing", "expected"),
    [
        (8, [0, 1, 2, 3], 10, [4, 5, 6, 7]),
        (8, [0, 1, 2, 3], 3, [4, 5]),
        (8, range(8), 50, []),
        (8, [5], 1, []),
        (4, [], 9, [0, 1, 2, 3]),
    ],
)
def test_help_goes_to_other_workers_partitions(partitions, own, missing, expected) -> None:
    assert planner.help_partitions(partitions, own, missing) == expected


def test_builder_computes_lowest_unclaimed_and_counts() -> None:
    # given a store holding segment 0 and a claim by someone else on 1
    store = MemorySequenceStore(LAYOUT)
    store.put(0, encode_segment(*LAYOUT.bounds(0)))
    store.claim(1, "other", 1000)
    builder = planner.SegmentBuilder(store, "me", 1000)
    # when the builder runs over segments 0..3
    step = builder.build_one(store.missing([0, 1, 2, 3]))
    # then it computed 2 (0 is stored, 1 is claimed), stored it and released
    assert step == planner.Step(2, computed=True, stored=True)
    assert read_header(store.segments[2]).start == LAYOUT.bounds(2)[0]
    assert store.claims == {1: "other"}
    assert store.counters[keys.STAT_SEGMENTS_COMPUTED] == 1


def test_builder_returns_none_when_all_claimed() -> None:
    store = MemorySequenceStore(LAYOUT)
    for j in (0, 1):
        store.claim(j, "other", 1000)
    assert planner.SegmentBuilder(store, "me", 1000).build_one([0, 1]) is None


def test_builder_rechecks_under_claim() -> None:
    # given a pending list read before another worker stored segment 0
    store = MemorySequenceStore(LAYOUT)
    pending = store.missing([0])
    store.put(0, encode_segment(*LAYOUT.bounds(0)))
    calls: list[tuple[int, int]] = []

    def encode(start: int, count: int) -> bytes:
        calls.append((start, count))
        return encode_segment(start, count)

    # when the builder claims it, then it finds it stored and computes nothing
    step = planner.SegmentBuilder(store, "me", 1000, encode).build_one(pending)
    assert step == planner.Step(0, computed=False, stored=False)
    assert calls == []
    assert store.claims == {}


def test_two_builders_never_compute_a_segment_twice() -> None:
    # given two workers alternating over the same task
    store = MemorySequenceStore(LAYOUT)
    js = planner.task_segments(LAYOUT, 3000)
    builders = [planner.SegmentBuilder(store, name, 1000) for name in ("a", "b")]
    # when they take turns until nothing is missing
    turn = 0
    while store.missing(js):
        builders[turn % 2].build_one(store.missing(js))
        turn += 1
    # then every segment was computed exactly once
    assert store.counters[keys.STAT_SEGMENTS_COMPUTED] == len(js)
    assert store.counters[keys.STAT_SEGMENTS_DUPLICATE] == 0
