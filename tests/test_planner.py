"""The planner: which segments a task needs, claims, lowest-first compute."""

from __future__ import annotations

import pytest

from fibod import keys, planner
from fibod.segments import SegmentLayout, encode_segment, read_header
from fibod.testing import MemorySequenceStore, MemoryWorkList
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


def test_builder_computes_a_segment_under_its_claim_and_counts_it() -> None:
    # given an empty store
    store = MemorySequenceStore(LAYOUT)
    builder = planner.SegmentBuilder(store, "me", 1000)
    # when segment 2 is built and the counts flushed
    built = builder.build(2)
    builder.flush()
    # then it was computed, stored and counted once; another task's worker
    # finds it stored: done, neither computed nor counted again
    assert built
    assert read_header(store.segments[2]).start == LAYOUT.bounds(2)[0]
    assert store.claims == {2: "me"}
    other = planner.SegmentBuilder(store, "other task", 1000)
    assert other.build(2)
    other.flush()
    assert store.counters == {keys.STAT_SEGMENTS_COMPUTED: 1}


def test_builder_leaves_a_segment_another_worker_holds() -> None:
    store = MemorySequenceStore(LAYOUT)
    assert store.claim(1, "other", 1000) is planner.Claim.CLAIMED
    calls: list[tuple[int, int]] = []

    def encode(start: int, count: int) -> bytes:
        calls.append((start, count))
        return encode_segment(start, count)

    assert not planner.SegmentBuilder(store, "me", 1000, encode).build(1)
    assert calls == [] and 1 not in store.segments and store.claims == {1: "other"}


@pytest.mark.parametrize("claim_expired", [False, True])
def test_builder_skips_a_segment_stored_since_it_was_handed_out(claim_expired: bool) -> None:
    # given segment 3 on two tasks' work lists, computed and stored from the
    # other list meanwhile; its claim lives on until its lease ends, or has ended
    store = MemorySequenceStore(LAYOUT)
    assert planner.SegmentBuilder(store, "other task's worker", 1000).build(3)
    if claim_expired:
        del store.claims[3]
    calls: list[tuple[int, int]] = []

    def encode(start: int, count: int) -> bytes:
        calls.append((start, count))
        return encode_segment(start, count)

    builder = planner.SegmentBuilder(store, "me", 1000, encode)
    # when this worker gets to it
    built = builder.build(3)
    builder.flush()
    # then it counts as done, and is neither computed, claimed nor counted again
    assert built
    assert calls == []
    assert store.claims.get(3) == (None if claim_expired else "other task's worker")
    assert store.counters[keys.STAT_SEGMENTS_DUPLICATE] == 0


def test_two_workers_taking_turns_at_a_work_list_compute_each_segment_once() -> None:
    # given a task's work list and two workers' builders on one store
    store = MemorySequenceStore(LAYOUT)
    work = MemoryWorkList()
    js = planner.task_segments(LAYOUT, 3000)
    work.publish("t", js)
    builders = [planner.SegmentBuilder(store, name, 1000) for name in ("a", "b")]
    # when they take turns taking and building until nothing is left
    turn = 0
    while batch := work.take("t"):
        for j in batch:
            builders[turn % 2].build(j)
        turn += 1
    for builder in builders:
        builder.flush()
    # then every segment is stored, each computed exactly once, by both workers
    assert store.missing(js) == []
    assert store.counters[keys.STAT_SEGMENTS_COMPUTED] == len(js)
    assert store.counters[keys.STAT_SEGMENTS_DUPLICATE] == 0
    assert turn > 2
