"""Which workers are alive and what each is doing, kept in the task store.

Each worker publishes its status every HEARTBEAT_S from a thread of its
own: fibod:worker:<id> (the status as JSON), which expires after STATUS_TTL_S, and
its id in the sorted set fibod:workers scored by when it was last seen.
The monitor reads the workers seen within STATUS_TTL_S, from any host; a
worker that died drops out by itself.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import cast

import redis

from fibod import keys
from fibod.errors import UnavailableError
from fibod.redis_client import store_call

log = logging.getLogger("fibod.roster")

_STORE = "task store"
#: Seconds between two heartbeats of a worker.
HEARTBEAT_S = 1.0
#: A worker not seen for this long is gone (its status hash expires then too).
STATUS_TTL_S = 5
#: Ids not seen for this long are dropped from the set by readers.
FORGET_AFTER_S = 300


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as the dashboard shows it."""

    id: str
    name: str
    host: str
    pid: int
    #: idle, busy (running a unit) or stopping.
    state: str = "idle"
    #: The unit being run: its kind (task, help), task id and sn.
    kind: str | None = None
    task: str | None = None
    sn: int | None = None
    #: ms since the epoch: start of the current unit (or of idling).
    since: int = 0
    partitions: list[int] = field(default_factory=list)
    metrics_port: int | None = None
    units_done: int = 0

    def to_json(self) -> dict[str, object]:
        """Describe the worker for the dashboard."""
        return asdict(self)


class Roster:
    """Publish and read worker statuses."""

    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client  # decode_responses=True
        self._clock = clock

    @store_call(_STORE)
    def publish(self, status: WorkerStatus) -> None:
        """Record a worker's status, valid for STATUS_TTL_S."""
        now_ms = int(self._clock() * 1000)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.worker_key(status.id), json.dumps(status.to_json()), ex=STATUS_TTL_S)
            pipe.zadd(keys.WORKERS_KEY, {status.id: now_ms})
            pipe.zremrangebyscore(keys.WORKERS_KEY, "-inf", now_ms - FORGET_AFTER_S * 1000)
            pipe.execute()

    @store_call(_STORE)
    def remove(self, worker_id: str) -> None:
        """Forget a worker that is leaving."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(keys.worker_key(worker_id))
            pipe.zrem(keys.WORKERS_KEY, worker_id)
            pipe.execute()

    @store_call(_STORE)
    def live(self) -> list[WorkerStatus]:
        """Return the workers seen within STATUS_TTL_S, by name."""
        now_ms = int(self._clock() * 1000)
        ids = cast(
            list[str],
            self._redis.zrangebyscore(keys.WORKERS_KEY, now_ms - STATUS_TTL_S * 1000, "+inf"),
        )
        if not ids:
            return []
        found = cast(list[str | None], self._redis.mget([keys.worker_key(i) for i in ids]))
        workers = [WorkerStatus(**json.loads(raw)) for raw in found if raw]
        return sorted(workers, key=lambda w: (w.host, w.name, w.id))


class Heartbeat:
    """A daemon thread that publishes a worker's status every HEARTBEAT_S."""

    def __init__(self, roster: Roster, status: Callable[[], WorkerStatus]) -> None:
        self._roster = roster
        self._status = status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Start publishing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop publishing and take the worker off the roster."""
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S * 2)
        try:
            self._roster.remove(self._status().id)
        except UnavailableError as exc:
            log.warning("could not leave the roster: %s", exc)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._roster.publish(self._status())
                failing = False
            except UnavailableError as exc:
                if not failing:  # say it once per outage, not every second
                    log.warning("heartbeat not recorded: %s", exc)
                failing = True
            self._stop.wait(HEARTBEAT_S)
