"""The whole stack's figures as Prometheus metrics, read at each scrape.

Counted where the work happens and kept in the stores (fibod/counters.py,
the task index, the roster) or in Kafka (offsets), these are the same
from every host, so they are read when scraped rather than kept in a
process. The monitor app adds them to /metrics at the entry URL.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fibod import keys
from fibod.health import KAFKA, SEQUENCE_STORE, TASK_STORE
from fibod.stack_state import StackReader, StackState

#: Counters of fibod:stats shown as fibod_segments_total{outcome}.
SEGMENT_OUTCOMES = {
    "computed": keys.STAT_SEGMENTS_COMPUTED,
    "reused": keys.STAT_SEGMENTS_REUSED,
    "duplicate": keys.STAT_SEGMENTS_DUPLICATE,
    "regenerated": keys.STAT_SEGMENTS_REGENERATED,
    "repaired": keys.STAT_SEGMENTS_REPAIRED,
}
#: Counters of fibod:stats shown as fibod_tasks_finished_total{state}.
FINISHED_STATES = {"ready": keys.STAT_TASKS_COMPLETED, "failed": keys.STAT_TASKS_FAILED}


class StackCollector(Collector):
    """Read the stack once per scrape and yield its metrics."""

    def __init__(self, reader: StackReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        """Yield every stack metric; those of a part that did not answer are left out."""
        return iter(stack_metrics(self._reader.read()))


def stack_metrics(state: StackState) -> list[Metric]:
    """Turn one reading of the stack into metric families."""
    found: list[Metric] = []
    up = GaugeMetricFamily(
        "fibod_up", "1 if the part answered the monitor's read of this scrape", labels=["part"]
    )
    for part in (TASK_STORE, SEQUENCE_STORE, KAFKA):
        up.add_metric([part], 0 if part in state.errors else 1)
    found.append(up)
    if state.tasks is not None:
        tasks = GaugeMetricFamily(
            "fibod_tasks", "Tasks queued or running now (the live task index)", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "fibod_task_oldest_age_seconds",
            "Age of the oldest task in this state (0 when there is none)",
            labels=["state"],
        )
        for name, count in state.tasks.counts.items():
            tasks.add_metric([name], count)
            created = state.tasks.oldest_created_ms[name]
            age_s = 0.0 if created is None else max(0.0, (state.time_ms - created) / 1000)
            oldest.add_metric([name], age_s)
        found += [tasks, oldest]
    if state.counters is not None:
        found += _counters(state.counters)
    if state.queue is not None:
        found += _queue(state)
    if state.stores:
        found += _stores(state)
    if state.workers is not None:
        workers = GaugeMetricFamily(
            "fibod_workers", "Workers seen in the last few seconds, by state", labels=["state"]
        )
        for name in ("idle", "busy", "stopping"):
            workers.add_metric([name], sum(1 for w in state.workers if w.state == name))
        found.append(workers)
    return found


def _counters(counters: dict[str, int]) -> list[Metric]:
    segments = CounterMetricFamily(
        "fibod_segments",
        "Segments by outcome: computed by a worker, reused from the store, duplicate "
        "(computed twice), regenerated or repaired by a fetch",
        labels=["outcome"],
    )
    for outcome, name in SEGMENT_OUTCOMES.items():
        segments.add_metric([outcome], counters.get(name, 0))
    finished = CounterMetricFamily(
        "fibod_tasks_finished", "Tasks marked ready or failed by the workers", labels=["state"]
    )
    for state, name in FINISHED_STATES.items():
        finished.add_metric([state], counters.get(name, 0))
    streamed = CounterMetricFamily(
        "fibod_bytes_streamed",
        "Sequence bytes the fetch app streamed (every host; the status byte not counted)",
        value=counters.get(keys.STAT_BYTES_STREAMED, 0),
    )
    return [segments, finished, streamed]


def _queue(state: StackState) -> list[Metric]:
    assert state.queue is not None
    lag = GaugeMetricFamily(
        "fibod_queue_lag",
        "Messages of the task topic the workers have not committed yet, per partition",
        labels=["partition"],
    )
    end = GaugeMetricFamily(
        "fibod_queue_end_offset", "End offset of each task topic partition", labels=["partition"]
    )
    for p in state.queue:
        lag.add_metric([str(p.partition)], p.lag)
        end.add_metric([str(p.partition)], p.end)
    return [lag, end]


def _stores(state: StackState) -> list[Metric]:
    labels = ["store", "node"]
    used = GaugeMetricFamily(
        "fibod_store_used_memory_bytes", "Memory a store server uses", labels=labels
    )
    cap = GaugeMetricFamily(
        "fibod_store_maxmemory_bytes", "A store server's maxmemory (0: no cap)", labels=labels
    )
    keys_held = GaugeMetricFamily("fibod_store_keys", "Keys a store server holds", labels=labels)
    evicted = CounterMetricFamily(
        "fibod_store_evicted_keys",
        "Keys a store server evicted to stay under maxmemory (segments, in the sequence store)",
        labels=labels,
    )
    for node in state.stores:
        where = [node.store, node.stats.address]
        used.add_metric(where, node.stats.used_memory)
        cap.add_metric(where, node.stats.maxmemory)
        keys_held.add_metric(where, node.stats.keys)
        evicted.add_metric(where, node.stats.evicted_keys)
    return [used, cap, keys_held, evicted]
