"""Prometheus metrics of fibod's processes, and their exposition.

gunicorn runs each app as several processes behind one port, so a
counter kept in one process's memory would show another process on
every scrape. prometheus_client's multiprocess mode is used instead:
each process writes its values to small mmap files in
PROMETHEUS_MULTIPROC_DIR, one folder per supervisor program
(<state dir>/metrics/<program>, emptied when the program starts), and a
scrape merges the files of every process. An app's or a worker's own
port merges its own folder; the monitor app (/metrics at the entry URL)
merges every program's folder on its host and adds the figures of the
whole stack read from the stores and Kafka (fibod/stack_metrics.py).
Without the variable (unit tests, the CLI) values stay in memory and
the default registry shows them.

No other design needs fewer moving parts: one port per gunicorn process
is not what nginx or a scrape config can follow, and a push gateway or a
statsd relay is one more daemon to run and watch.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

#: The folder prometheus_client's multiprocess mode writes to (set by supervisor).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of the Prometheus text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Request duration buckets, seconds: from a submit (ms) to a long stream (minutes).
DURATION_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
)  # fmt: skip
#: Segment compute time buckets, seconds (a 2 MB segment takes tens of ms).
SEGMENT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "fibod_http_requests",
    "HTTP requests answered, by app, route and status code",
    ["app", "route", "code"],
)
HTTP_DURATION = Histogram(
    "fibod_http_request_duration_seconds",
    "Time from a request's arrival to its last body byte handed to the server",
    ["app", "route"],
    buckets=DURATION_BUCKETS_S,
)
HTTP_BYTES = Counter(
    "fibod_http_response_bytes",
    "Body bytes sent, by app and route (a stream counts what was sent before it ended)",
    ["app", "route"],
)
HTTP_IN_FLIGHT = Gauge(
    "fibod_http_requests_in_flight",
    "Requests being answered now (streams included)",
    ["app"],
    multiprocess_mode="livesum",
)
WORKER_UNITS = Counter(
    "fibod_worker_units",
    "Queue messages a worker handled, by kind (task, help) and outcome (done, abandoned, retried)",
    ["worker", "kind", "outcome"],
)
WORKER_SEGMENT_SECONDS = Histogram(
    "fibod_worker_segment_seconds",
    "Time a worker took to compute one segment",
    ["worker"],
    buckets=SEGMENT_BUCKETS_S,
)
WORKER_BUSY = Gauge(
    "fibod_worker_busy",
    "1 while a worker runs a unit, else 0",
    ["worker"],
    multiprocess_mode="livesum",
)
WORKER_PARTITIONS = Gauge(
    "fibod_worker_assigned_partitions",
    "Partitions of the task topic a worker holds",
    ["worker"],
    multiprocess_mode="livesum",
)


def multiproc_dir() -> Path | None:
    """Return this process's metrics folder, None when values stay in memory."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reset_multiproc_dir() -> None:
    """Empty (or make) this program's metrics folder; call before any value is written.

    A program's values start from zero when it starts, as a single
    process's would; files of its earlier processes would otherwise be
    summed in for ever.
    """
    folder = multiproc_dir()
    if folder is None:
        return
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def mark_process_dead(pid: int) -> None:
    """Drop a dead process's live gauges (gunicorn's child_exit hook)."""
    if multiproc_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class FilesCollector(Collector):
    """Merge the metric files of every process in some folders."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self._folders = list(folders)

    def collect(self) -> Iterator:  # type: ignore[type-arg]
        """Yield the merged metrics (counters summed, live gauges of live processes)."""
        files = [str(path) for folder in self._folders for path in sorted(folder.glob("*.db"))]
        return iter(MultiProcessCollector.merge(files, accumulate=True))


def exposition(folders: Iterable[Path] | None = None, extra: Iterable[Collector] = ()) -> bytes:
    """Render the metrics of these folders (default: this program's) plus extra collectors.

    Without a metrics folder, this process's own in-memory values.
    """
    if folders is None:
        own = multiproc_dir()
        if own is None:
            return generate_latest(REGISTRY) + _render(extra)
        folders = [own]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FilesCollector(folders))
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def _render(collectors: Iterable[Collector]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
