"""One frozen settings object, read from FIBOD_* environment variables.

Every tunable of the system lives here with its unit in its name and a
one-line reason; `Settings.from_env()` is the only place that reads the
environment, so tests build a `Settings` directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

#: Largest `sn` a client may ask for (F(0)..F(sn-1)); 200,000 is ~4.2 GB of text.
MAX_SN = 200_000
#: Largest index `fibod fib N` accepts; F(10**8) has ~21 million digits.
MAX_FIB_N = 1_000_000_000
#: Target size of one stored segment (BCD bytes); Redis values stay a few MB.
SEGMENT_BYTES = 2 * 1024 * 1024
#: Size of each write when streaming text; large writes keep syscalls rare.
WRITE_CHUNK_BYTES = 1024 * 1024
#: Longest a submit waits for Kafka to acknowledge a task before answering 503.
KAFKA_DELIVERY_TIMEOUT_MS = 5_000
#: Longest gap between consumer polls before Kafka evicts a worker; long
#: units keep polling with paused partitions, so this is only a safety net.
KAFKA_MAX_POLL_INTERVAL_MS = 60_000
#: A silent worker leaves the group after this long and its partitions move.
KAFKA_SESSION_TIMEOUT_MS = 10_000
#: Lifetime of a claim on a segment; computing one takes milliseconds, so a
#: claim left by a dead worker blocks others only this long.
CLAIM_LEASE_MS = 10_000
#: Upper bound of a fetch long-poll (`wait=`), in seconds.
FETCH_MAX_WAIT_S = 30
#: Retry-After (seconds) on answers that are not ready or unavailable.
RETRY_AFTER_S = 1
#: Socket and connect timeout of Redis clients.
REDIS_TIMEOUT_S = 5


#: Concurrent VIP streams per VIP process; one more gets 503 at once.
VIP_MAX_STREAMS = 2


@dataclass(frozen=True)
class Settings:
    """Settings of every fibod process; defaults suit one machine."""

    #: Largest sn accepted by the submit endpoint and the CLI.
    max_sn: int = MAX_SN
    #: Largest n accepted by `fibod fib`.
    max_fib_n: int = MAX_FIB_N
    #: Target BCD bytes per stored segment (part of the segment key).
    segment_bytes: int = SEGMENT_BYTES
    #: Bytes per write when streaming decimal text.
    write_chunk_bytes: int = WRITE_CHUNK_BYTES
    #: Task store (Redis #1).
    task_redis_url: str = "redis://127.0.0.1:6391/0"
    #: Sequence store (Redis #2).
    sequence_redis_url: str = "redis://127.0.0.1:6392/0"
    #: Password of both Redis servers; empty means none.
    redis_password: str = ""
    #: Kafka bootstrap servers.
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Kafka topic that carries tasks.
    task_topic: str = "fibod.tasks"
    #: Partitions of the task topic (at least 2x the workers).
    task_partitions: int = 8
    #: Kafka consumer group of the workers.
    worker_group: str = "fibod-workers"
    #: Seconds a finished task is kept before it expires.
    task_ttl_s: int = 24 * 3600
    #: Milliseconds a submit waits for Kafka's delivery report.
    kafka_delivery_timeout_ms: int = KAFKA_DELIVERY_TIMEOUT_MS
    #: Consumer max.poll.interval.ms of the workers.
    kafka_max_poll_interval_ms: int = KAFKA_MAX_POLL_INTERVAL_MS
    #: Consumer session.timeout.ms of the workers.
    kafka_session_timeout_ms: int = KAFKA_SESSION_TIMEOUT_MS
    #: Milliseconds a segment claim lives (SET NX PX).
    claim_lease_ms: int = CLAIM_LEASE_MS
    #: Largest `wait=` of a fetch long-poll, in seconds.
    fetch_max_wait_s: int = FETCH_MAX_WAIT_S
    #: Seconds sent in Retry-After.
    retry_after_s: int = RETRY_AFTER_S
    #: Socket timeout of Redis clients, in seconds.
    redis_timeout_s: int = REDIS_TIMEOUT_S
    #: API keys of the VIP sync path, comma-separated; empty switches it off.
    vip_api_keys: str = ""
    #: Concurrent VIP streams per VIP process.
    vip_max_streams: int = VIP_MAX_STREAMS
    #: Public base URL printed by `make up`.
    base_url: str = "http://127.0.0.1:8080"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from FIBOD_<FIELD> variables, defaults elsewhere."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get("FIBOD_" + field.name.upper())
            if raw is None:
                continue
            default = field.default
            try:
                values[field.name] = int(raw) if isinstance(default, int) else raw
            except ValueError as exc:
                raise ValueError(
                    f"FIBOD_{field.name.upper()} must be an integer, got {raw!r}"
                ) from exc
        return cls(**values)  # type: ignore[arg-type]
