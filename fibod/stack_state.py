"""Read the state of the whole stack from its stores and Kafka, at once.

What the monitor shows, whether as Prometheus metrics
(fibod/stack_metrics.py) or as the dashboard's JSON (fibod/monitor.py):
tasks by state and the oldest of each, the counters, the queue's lag per
partition, each store server's memory and evictions, the live workers.
Everything lives in the stores and the broker, so any host's monitor
sees the same. A part that does not answer is named in `errors` and its
figures are left out, never reported as zeros.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from fibod.config import Settings
from fibod.counters import Counters
from fibod.errors import UnavailableError
from fibod.health import KAFKA, PROBE_TIMEOUT_S, SEQUENCE_STORE, TASK_STORE, KafkaAdmin
from fibod.redis_client import connect_task_store, store_call
from fibod.roster import Roster, WorkerStatus
from fibod.sequences import NodeStats, SequenceStore, node_stats_from_info
from fibod.task_index import LiveSummary, TaskIndex

log = logging.getLogger("fibod.stack")

T = TypeVar("T")


@dataclass(frozen=True)
class PartitionLag:
    """One partition of the task topic: its end, the workers' commit, the gap."""

    partition: int
    end: int
    committed: int
    lag: int


@dataclass(frozen=True)
class StoreNode:
    """One Redis server of a store."""

    store: str
    stats: NodeStats


@dataclass
class StackState:
    """Everything the monitor read in one go; None where a part did not answer."""

    time_ms: int
    errors: dict[str, str] = field(default_factory=dict)
    tasks: LiveSummary | None = None
    counters: dict[str, int] | None = None
    queue: list[PartitionLag] | None = None
    stores: list[StoreNode] = field(default_factory=list)
    workers: list[WorkerStatus] | None = None


class StackReader:
    """Read a StackState from the task store, the sequence store and Kafka."""

    def __init__(
        self,
        settings: Settings,
        task_client: redis.Redis,
        sequences: SequenceStore,
        admin: KafkaAdmin,
    ) -> None:
        self._settings = settings
        self._task_client = task_client
        self._sequences = sequences
        self._admin = admin
        self.index = TaskIndex(task_client)
        self.roster = Roster(task_client)
        self.counters = Counters(task_client)

    @classmethod
    def from_settings(cls, settings: Settings) -> StackReader:
        """Connect to the configured stores and brokers."""
        return cls(
            settings,
            connect_task_store(settings),
            SequenceStore.from_settings(settings),
            KafkaAdmin(settings),
        )

    def read(self) -> StackState:
        """Read every part; a part that fails is named in `errors`."""
        state = StackState(time_ms=int(time.time() * 1000))
        state.tasks = _attempt(state, TASK_STORE, self.index.live_summary)
        state.counters = _attempt(state, TASK_STORE, self.counters.read)
        state.workers = _attempt(state, TASK_STORE, self.roster.live)
        task_node = _attempt(state, TASK_STORE, self._task_node)
        if task_node is not None:
            state.stores.append(StoreNode("task", task_node))
        for node in _attempt(state, SEQUENCE_STORE, self._sequences.node_stats) or []:
            state.stores.append(StoreNode("sequence", node))
        state.queue = _attempt(state, KAFKA, self.queue)
        return state

    @store_call(TASK_STORE)
    def _task_node(self) -> NodeStats:
        kwargs = self._task_client.connection_pool.connection_kwargs
        address = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        return node_stats_from_info(address, self._task_client.info(), self._task_client.dbsize())

    def queue(self) -> list[PartitionLag]:
        """Return each partition's end offset, the workers' committed offset and the lag."""
        topic, group = self._settings.task_topic, self._settings.worker_group
        admin = self._admin.get()
        try:
            meta = admin.list_topics(topic=topic, timeout=PROBE_TIMEOUT_S)
            found = meta.topics.get(topic)
            if found is None or found.error is not None:
                raise UnavailableError(f"{KAFKA}: topic {topic} is not there")
            tps = [TopicPartition(topic, p) for p in sorted(found.partitions)]
            ends = _offsets(admin, tps, OffsetSpec.latest())
            starts = _offsets(admin, tps, OffsetSpec.earliest())
            request = [ConsumerGroupTopicPartitions(group, tps)]
            answer = admin.list_consumer_group_offsets(request, request_timeout=PROBE_TIMEOUT_S)[
                group
            ].result(timeout=PROBE_TIMEOUT_S * 2)
        except UnavailableError:
            raise
        except Exception as exc:  # KafkaException, a timed-out future
            self._admin.failed()
            raise UnavailableError(f"{KAFKA} unavailable: {exc}") from exc
        committed = {tp.partition: tp.offset for tp in answer.topic_partitions}
        lags = []
        for tp in tps:
            end, start = ends[tp.partition], starts[tp.partition]
            done = committed.get(tp.partition, -1)
            done = done if done >= 0 else start  # nothing committed yet: all since the start
            lags.append(PartitionLag(tp.partition, end, done, max(0, end - done)))
        return lags


def _offsets(admin: AdminClient, tps: list[TopicPartition], spec: OffsetSpec) -> dict[int, int]:
    """Return each partition's offset of the kind spec asks (latest, earliest)."""
    futures = admin.list_offsets({tp: spec for tp in tps}, request_timeout=PROBE_TIMEOUT_S)
    return {
        tp.partition: future.result(timeout=PROBE_TIMEOUT_S * 2).offset
        for tp, future in futures.items()
    }


def _attempt(state: StackState, part: str, read: Callable[[], T]) -> T | None:
    """Run one read; on failure name the part (first reason kept) and return None."""
    if part in state.errors:
        return None  # it failed a moment ago: do not wait on it again
    try:
        return read()
    except UnavailableError as exc:
        state.errors[part] = str(exc)
        log.warning("monitor: %s", exc)
        return None


def summary_json(state: StackState) -> dict[str, Any]:
    """Describe a StackState as the dashboard's JSON (docs/API.md)."""
    body: dict[str, Any] = {"time": state.time_ms, "errors": state.errors}
    if state.tasks is not None:
        body["tasks"] = {
            "counts": state.tasks.counts,
            "oldest_created": state.tasks.oldest_created_ms,
        }
    if state.counters is not None:
        body["counters"] = state.counters
    if state.queue is not None:
        body["queue"] = {
            "lag": sum(p.lag for p in state.queue),
            "partitions": [vars(p) for p in state.queue],
        }
    body["stores"] = [{"store": n.store} | vars(n.stats) for n in state.stores]
    if state.workers is not None:
        body["workers"] = [w.to_json() for w in state.workers]
    return body
