"""The stack's figures as Prometheus metrics: names, labels, values, and parts down."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from fibod.roster import WorkerStatus
from fibod.sequences import NodeStats
from fibod.stack_metrics import stack_metrics
from fibod.stack_state import PartitionLag, StackState, StoreNode
from fibod.task_index import LiveSummary
from tests.prom import Key, parse

NOW_MS = 1_700_000_100_000


def samples(state: StackState) -> dict[Key, float]:
    """Render the metrics as Prometheus text, parse it back: name+labels -> value."""

    class Fixed(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return iter(stack_metrics(state))

    registry = CollectorRegistry()
    registry.register(Fixed())
    return parse(generate_latest(registry).decode())


def full_state() -> StackState:
    return StackState(
        time_ms=NOW_MS,
        tasks=LiveSummary(
            {"queued": 3, "running": 1},
            {"queued": NOW_MS - 90_000, "running": NOW_MS - 5_000},
        ),
        counters={
            "segments_computed": 12,
            "segments_reused": 30,
            "segments_duplicate": 1,
            "segments_regenerated": 2,
            "segments_repaired": 0,
            "tasks_completed": 7,
            "tasks_failed": 1,
            "bytes_streamed": 123456,
        },
        queue=[PartitionLag(0, 10, 7, 3), PartitionLag(1, 4, 4, 0)],
        stores=[
            StoreNode("task", NodeStats("127.0.0.1:6391", 9, 2_000_000, 1 << 30, 0)),
            StoreNode("sequence", NodeStats("127.0.0.1:6392", 40, 90_000_000, 1 << 32, 17)),
        ],
        workers=[
            WorkerStatus(id="h:1", name="worker-0", host="h", pid=1, state="busy"),
            WorkerStatus(id="h:2", name="worker-1", host="h", pid=2),
        ],
    )


def test_every_figure_of_the_stack_has_its_metric() -> None:
    got = samples(full_state())
    assert got[("fibod_tasks", (("state", "queued"),))] == 3
    assert got[("fibod_tasks", (("state", "running"),))] == 1
    assert got[("fibod_task_oldest_age_seconds", (("state", "queued"),))] == 90
    assert got[("fibod_segments_total", (("outcome", "computed"),))] == 12
    assert got[("fibod_segments_total", (("outcome", "reused"),))] == 30
    assert got[("fibod_segments_total", (("outcome", "duplicate"),))] == 1
    assert got[("fibod_tasks_finished_total", (("state", "failed"),))] == 1
    assert got[("fibod_bytes_streamed_total", ())] == 123456
    assert got[("fibod_queue_lag", (("partition", "0"),))] == 3
    assert got[("fibod_queue_end_offset", (("partition", "1"),))] == 4
    seq = (("node", "127.0.0.1:6392"), ("store", "sequence"))
    assert got[("fibod_store_evicted_keys_total", seq)] == 17
    assert got[("fibod_store_used_memory_bytes", seq)] == 90_000_000
    assert got[("fibod_store_maxmemory_bytes", seq)] == 1 << 32
    assert got[("fibod_workers", (("state", "busy"),))] == 1
    assert got[("fibod_workers", (("state", "idle"),))] == 1
    assert {got[("fibod_up", (("part", p),))] for p in ("task store", "kafka")} == {1}


def test_a_part_that_did_not_answer_is_down_and_its_figures_are_absent_not_zero() -> None:
    state = StackState(
        time_ms=NOW_MS,
        errors={"kafka": "kafka unavailable: timed out"},
        tasks=full_state().tasks,
    )
    got = samples(state)
    assert got[("fibod_up", (("part", "kafka"),))] == 0
    assert got[("fibod_up", (("part", "task store"),))] == 1
    assert not any(name.startswith("fibod_queue") for name, _ in got)
    assert ("fibod_tasks", (("state", "queued"),)) in got
