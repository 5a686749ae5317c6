"""What operators see of a worker: its own port and its heartbeat.

Worker N answers /metrics, /healthz and /readyz on
FIBOD_WORKER_METRICS_PORT + N (fibod/observe.py) and publishes what it
is doing to the roster every second (fibod/roster.py), both from
threads of their own while its loop runs; neither can stop it working.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fibod import health, metrics, observe
from fibod.config import Settings
from fibod.redis_client import connect_task_store
from fibod.roster import Heartbeat, Roster, WorkerStatus

if TYPE_CHECKING:  # fibod.worker imports this module
    from fibod.worker import Worker


def worker_status(worker: Worker, host: str, pid: int, port: int | None) -> WorkerStatus:
    """Describe a worker for the roster (read from the heartbeat thread)."""
    unit = worker.current
    return WorkerStatus(
        id=worker.owner_id,
        name=worker.name,
        host=host,
        pid=pid,
        state="stopping" if worker.stopping else ("busy" if unit else "idle"),
        kind=unit.kind if unit else None,
        task=unit.task_id if unit else None,
        sn=unit.sn if unit else None,
        since=worker.current_since,
        partitions=sorted(worker.assigned),
        metrics_port=port,
        units_done=worker.units_done,
    )


def worker_readiness(worker: Worker) -> list[str]:
    """Say why a worker cannot take tasks yet (empty: it can)."""
    if worker.stopping:
        return ["worker: stopping"]
    if not worker.assignment_received:
        return ["worker: no partition assignment received yet"]
    return []


@contextlib.contextmanager
def operator_view(worker: Worker, settings: Settings, index: int) -> Iterator[None]:
    """Serve the worker's /metrics, /healthz, /readyz and publish its heartbeat meanwhile."""
    port = settings.worker_metrics_port + index
    metrics.WORKER_BUSY.labels(worker.name).set(0)  # shown before the first unit too
    metrics.WORKER_PARTITIONS.labels(worker.name).set(0)
    checks = health.stack_checks(settings, (health.TASK_STORE, health.SEQUENCE_STORE))

    def readiness() -> list[str]:
        return worker_readiness(worker) + health.failures(checks)

    server = observe.serve(
        observe.Observed(None, worker.name, readiness), settings.listen_address, port
    )
    host, pid = socket.gethostname(), os.getpid()
    served = port if server is not None else None
    heartbeat = Heartbeat(
        Roster(connect_task_store(settings)), lambda: worker_status(worker, host, pid, served)
    )
    heartbeat.start()
    try:
        yield
    finally:
        heartbeat.stop()
        if server is not None:
            server.shutdown()
