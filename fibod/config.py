"""Every fibod setting, declared once: type, default, allowed range, doc.

A setting is the field `name` of `Settings` and the environment variable
FIBOD_<NAME>. The apps, the CLI, the scripts that render the stack's
configs (`scripts/render_conf.py`), the health checks, the topic set-up
and the benchmarks all read this one model, so a default or a limit is
spelled in one place. Values come, later ones winning, from the defaults
here, an env file (KEY=VALUE lines) and the environment. A value out of
its range, or an unknown FIBOD_* name, is refused with a one-line reason.

Only the standard library is imported: the CLI's start-up pays for it.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from fibod.envfile import EnvFileError, StrPath, read_env_file

#: Prefix of every setting's environment variable.
ENV_PREFIX = "FIBOD_"
#: Names the env file to read; not a setting itself.
ENV_FILE_VARIABLE = "FIBOD_ENV_FILE"
#: The checkout this package runs from (an editable install, as `make install` makes).
CHECKOUT_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
#: The effective settings `make up` writes in a checkout (found by the CLI).
CHECKOUT_ENV_FILE = os.path.join(CHECKOUT_DIR, "var", "conf", "fibod.env")

#: Exit status of a daemon refused at start for its settings (sysexits EX_CONFIG).
EX_CONFIG = 78
#: Exit status with which a gunicorn worker makes its arbiter give up, not respawn.
GUNICORN_BOOT_ERROR = 3

#: The user the apps log in as, to Redis (fibod:* keys, no dangerous or admin
#: command) and to Kafka (fibod.* topics, fibod-* groups).
APP_USER = "fibod"
#: The Kafka user with every right: the brokers' own traffic, topic set-up,
#: tests.
ADMIN_USER = "fibod-admin"
#: The Redis user with every right (replication, Sentinel, the CLI's cache
#: commands, health checks, tests) is Redis's default user, with a password:
#: Redis 7.0 replays its append-only file as the default user, and with that
#: user off it drops every MULTI/EXEC of the file on a restart (NOPERM).
REDIS_ADMIN_USER = "default"

#: Who reads a setting: the Python processes, the stack's configs, or scripts.
APP, STACK, SCRIPT = "app", "stack", "script"

_SIZE = r"[0-9]+(b|kb|mb|gb)?"
_NAME = r"[A-Za-z0-9._-]{1,249}"
_SECRET = r"([A-Za-z0-9]{16,128})?"


def _derived_secret(purpose: str, secret: str) -> str:
    """Derive a secret for one purpose from another (settings files written before it)."""
    return hashlib.sha256(f"fibod {purpose}\0{secret}".encode()).hexdigest()[:48]


class SettingsError(ValueError):
    """A setting is unknown, malformed or out of its range."""


@dataclass(frozen=True)
class Spec:
    """What is known about one setting besides its type and default."""

    doc: str
    scope: str
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    secret: bool = False
    #: Computes the default from the other settings (URLs from ports).
    derive: Callable[[Mapping[str, Any]], Any] | None = None


def setting(
    default: Any,
    doc: str,
    *,
    scope: str = APP,
    minimum: int | None = None,
    maximum: int | None = None,
    pattern: str | None = None,
    secret: bool = False,
    derive: Callable[[Mapping[str, Any]], Any] | None = None,
) -> Any:
    """Declare one setting: a dataclass field that carries its Spec."""
    spec = Spec(doc, scope, minimum, maximum, pattern, secret, derive)
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class Settings:
    """Every setting of fibod; the defaults suit one machine on loopback."""

    # --- Limits of what clients may ask --------------------------------------
    max_sn: int = setting(
        200_000,
        "largest sn a client may ask for (200,000 is ~4.2 GB of text)",
        minimum=0,
        maximum=10_000_000,
    )
    max_from: int = setting(
        1_000_000,
        "largest first index A of `from=A` (sn=200,000 from 1,000,000 is ~46 GB of text)",
        minimum=0,
        maximum=1_000_000_000,
    )
    max_fib_n: int = setting(
        1_000_000_000, "largest N of `fibod fib N`", minimum=0, maximum=10_000_000_000
    )
    fetch_max_wait_s: int = setting(
        30, "longest long-poll (`wait=`) of a fetch, seconds", minimum=0, maximum=300
    )
    fetch_max_waiting: int = setting(
        8,
        "long-polls (`wait=`) one fetch process holds at once (below FIBOD_FETCH_THREADS); "
        "beyond, a fetch answers at once, as without `wait`",
        minimum=0,
        maximum=1024,
    )
    fetch_early_start: int = setting(
        1,
        "1 = a whole-body GET with `wait=` on a running task is answered at once and each "
        "segment sent as the workers store it (X-Fibod-State: running); 0 = it waits for ready",
        minimum=0,
        maximum=1,
    )
    vip_max_streams: int = setting(
        2, "concurrent VIP streams per VIP process; one more gets 503", minimum=1, maximum=1024
    )
    # --- Data layout ----------------------------------------------------------
    segment_bytes: int = setting(
        2 * 1024 * 1024,
        "target BCD bytes per stored segment (part of every segment key)",
        minimum=4096,
        maximum=256 * 1024 * 1024,
    )
    write_chunk_bytes: int = setting(
        1024 * 1024,
        "bytes per write when streaming text",
        minimum=64 * 1024,
        maximum=64 * 1024 * 1024,
    )
    task_ttl_s: int = setting(
        24 * 3600,
        "seconds a finished task is kept before it expires",
        minimum=60,
        maximum=365 * 24 * 3600,
    )
    claim_lease_ms: int = setting(
        10_000,
        "lifetime of a claim on a segment being computed, ms",
        minimum=100,
        maximum=600_000,
    )
    # --- Where the parts are --------------------------------------------------
    state_dir: str = setting(
        "",
        "folder of the stack's configs, data, logs and sockets (derived: var/ of the checkout)",
        scope=STACK,
        pattern=r"/[^\s]*",
        derive=lambda s: os.path.join(CHECKOUT_DIR, "var"),
    )
    supervisor_programs: str = setting(
        "ops/supervisor/*.conf",
        "program files supervisord runs on this host, one per role (space-separated globs)",
        scope=STACK,
        pattern=r"[A-Za-z0-9_./*-]+( [A-Za-z0-9_./*-]+)*",
    )
    listen_address: str = setting(
        "127.0.0.1",
        "address every listener of the stack binds to and clients reach it at",
        scope=STACK,
        pattern=r"[0-9]{1,3}(\.[0-9]{1,3}){3}",
    )
    http_port: int = setting(
        8080, "nginx, the public entry point", scope=STACK, minimum=1, maximum=65535
    )
    submit_port: int = setting(
        8001, "gunicorn running the submit app", scope=STACK, minimum=1, maximum=65535
    )
    fetch_port: int = setting(
        8002, "gunicorn running the fetch app", scope=STACK, minimum=1, maximum=65535
    )
    vip_port: int = setting(
        8003, "gunicorn running the VIP app", scope=STACK, minimum=1, maximum=65535
    )
    monitor_port: int = setting(
        8004,
        "gunicorn running the monitor app (/metrics, /readyz, the dashboard's data)",
        scope=STACK,
        minimum=1,
        maximum=65535,
    )
    worker_metrics_port: int = setting(
        8010,
        "worker N serves /metrics, /healthz, /readyz on this port + N",
        scope=STACK,
        minimum=1,
        maximum=65535,
    )
    task_redis_port: int = setting(
        6391, "Redis #1, the task store", scope=STACK, minimum=1, maximum=65535
    )
    sequence_redis_port: int = setting(
        6392, "Redis #2, the sequence store", scope=STACK, minimum=1, maximum=65535
    )
    kafka_port: int = setting(9092, "Kafka broker listener", scope=STACK, minimum=1, maximum=65535)
    kafka_controller_port: int = setting(
        9093, "Kafka KRaft controller listener", scope=STACK, minimum=1, maximum=65535
    )
    task_redis_url: str = setting(
        "",
        "task store URL (derived: redis://LISTEN_ADDRESS:TASK_REDIS_PORT/0)",
        pattern=r"redis://[^\s]+",
        derive=lambda s: f"redis://{s['listen_address']}:{s['task_redis_port']}/0",
    )
    sequence_redis_url: str = setting(
        "",
        "sequence store URL (derived: redis://LISTEN_ADDRESS:SEQUENCE_REDIS_PORT/0)",
        pattern=r"redis://[^\s]+",
        derive=lambda s: f"redis://{s['listen_address']}:{s['sequence_redis_port']}/0",
    )
    kafka_bootstrap: str = setting(
        "",
        "Kafka bootstrap servers, comma-separated (derived: LISTEN_ADDRESS:KAFKA_PORT)",
        pattern=r"[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*",
        derive=lambda s: f"{s['listen_address']}:{s['kafka_port']}",
    )
    base_url: str = setting(
        "",
        "public entry URL (derived: http://LISTEN_ADDRESS:HTTP_PORT)",
        pattern=r"https?://[^\s]+",
        derive=lambda s: f"http://{s['listen_address']}:{s['http_port']}",
    )
    # --- Secrets (written at random on the first `make up`) -----------------------
    redis_password: str = setting(
        "",
        "password of the Redis user `fibod` the apps log in as (random, 48 hex digits)",
        pattern=_SECRET,
        secret=True,
    )
    kafka_password: str = setting(
        "",
        "password of the Kafka user `fibod` the apps log in as (SASL/SCRAM)",
        pattern=_SECRET,
        secret=True,
    )
    kafka_admin_password: str = setting(
        "",
        "password of the Kafka user `fibod-admin` (brokers, topic set-up, tests); "
        "never given to the apps",
        scope=STACK,
        pattern=_SECRET,
        secret=True,
    )
    redis_admin_password: str = setting(
        "",
        "password of the Redis user `fibod-admin` (CLI cache commands, health checks, "
        "replication); never given to the apps",
        scope=STACK,
        pattern=_SECRET,
        secret=True,
    )

    vip_api_keys: str = setting(
        "",
        "API keys of the VIP path, comma-separated; empty switches it off (403)",
        pattern=r"[A-Za-z0-9_, -]*",
        secret=True,
    )
    id_secret: str = setting(
        "",
        "key of the MAC in task ids, so an id fibod never issued is unknown (404), not "
        "expired (410); empty = derived from REDIS_PASSWORD; the same on every API host",
        pattern=_SECRET,
        secret=True,
        derive=lambda s: _derived_secret("task ids", s["redis_password"]),
    )
    # --- Kafka ----------------------------------------------------------------
    task_topic: str = setting("fibod.tasks", "Kafka topic that carries tasks", pattern=_NAME)
    task_partitions: int = setting(
        8,
        "partitions of the task topic (at least 2x the workers; grown, never shrunk)",
        minimum=1,
        maximum=1024,
    )
    worker_group: str = setting(
        "fibod-workers", "Kafka consumer group of the workers", pattern=_NAME
    )
    kafka_delivery_timeout_ms: int = setting(
        5_000,
        "longest a submit waits for Kafka to take a task before 503, ms",
        minimum=100,
        maximum=300_000,
    )
    kafka_max_poll_interval_ms: int = setting(
        60_000,
        "workers' max.poll.interval.ms (a safety net: long units keep polling)",
        minimum=1_000,
        maximum=3_600_000,
    )
    worker_commit_interval_ms: int = setting(
        200,
        "a worker commits finished units' offsets once the oldest waited this long, "
        "when idle, and before giving partitions up (0 = after every unit); a worker "
        "that dies redoes at most this long's units, found done",
        minimum=0,
        maximum=60_000,
    )
    kafka_session_timeout_ms: int = setting(
        10_000,
        "a silent worker leaves the group after this long, ms",
        minimum=1_000,
        maximum=300_000,
    )
    kafka_heap: str = setting(
        "512m", "Kafka JVM heap (-Xms = -Xmx)", scope=STACK, pattern=r"[0-9]+[kmg]"
    )
    # --- Redis ----------------------------------------------------------------
    redis_timeout_s: int = setting(
        5, "socket and connect timeout of Redis clients, seconds", minimum=1, maximum=300
    )
    task_maxmemory: str = setting(
        "1gb", "task store memory cap; full = writes refused", scope=STACK, pattern=_SIZE
    )
    sequence_maxmemory: str = setting(
        "4gb", "sequence store memory cap; full = LRU eviction", scope=STACK, pattern=_SIZE
    )
    # --- Processes ------------------------------------------------------------
    run_user: str = setting(
        "fibod",
        "user every program runs as (supervisord alone stays root; `make up` creates it); "
        "empty = whoever runs `make up`; one that cannot reach the checkout falls back to "
        "that user with a warning",
        scope=STACK,
        pattern=r"([a-z_][a-z0-9_-]{0,31})?",
    )
    workers: str = setting(
        "auto",
        "worker processes; auto = one per usable core",
        scope=STACK,
        pattern=r"auto|[1-9][0-9]{0,2}",
    )
    worker_pin: int = setting(
        1,
        "1 = worker N pins itself to core N (if the host has it)",
        scope=STACK,
        minimum=0,
        maximum=1,
    )
    worker_nice: int = setting(
        10,
        "niceness of the workers (0 = as the rest): where they share cores with the "
        "API, requests stay quick while a backlog computes",
        scope=STACK,
        minimum=0,
        maximum=19,
    )
    submit_workers: int = setting(
        2, "gunicorn processes of the submit app", scope=STACK, minimum=1, maximum=256
    )
    submit_threads: int = setting(
        8, "threads per submit process", scope=STACK, minimum=1, maximum=1024
    )
    fetch_workers: int = setting(
        2, "gunicorn processes of the fetch app", scope=STACK, minimum=1, maximum=256
    )
    fetch_threads: int = setting(
        16, "threads (= concurrent streams) per fetch process", scope=STACK, minimum=1, maximum=1024
    )
    vip_workers: int = setting(
        1, "gunicorn processes dedicated to VIP streams", scope=STACK, minimum=1, maximum=256
    )
    vip_threads: int = setting(4, "threads per VIP process", scope=STACK, minimum=1, maximum=1024)
    log_level: str = setting(
        "INFO", "log level of every fibod process", pattern=r"DEBUG|INFO|WARNING|ERROR|CRITICAL"
    )
    log_format: str = setting(
        "text",
        "log lines of every fibod process and nginx's access log: readable text, or one JSON "
        "object per line",
        pattern=r"text|json",
    )
    monitor_allow: str = setting(
        "127.0.0.0/8",
        "nginx: client addresses (CIDR, comma-separated, or `all`) allowed to /metrics, "
        "/healthz, /readyz and the dashboard",
        scope=STACK,
        pattern=r"all|[0-9a-f.:/]+(,[0-9a-f.:/]+)*",
    )
    # --- nginx limits ---------------------------------------------------------
    rate_limit: str = setting(
        "200r/s", "nginx: submit requests per client address", scope=STACK, pattern=r"[0-9]+r/[sm]"
    )
    rate_burst: int = setting(
        400,
        "nginx: submit requests queued above the rate",
        scope=STACK,
        minimum=0,
        maximum=10_000_000,
    )
    fetch_conn_limit: int = setting(
        16,
        "nginx: open fetch connections per client address (keep below the fetch threads)",
        scope=STACK,
        minimum=1,
        maximum=100_000,
    )
    fetch_timeout_s: int = setting(
        3600,
        "nginx: longest the fetch and VIP apps may pause before their next byte (a "
        "long-poll, a segment computed), seconds; clients: SEND_TIMEOUT_S",
        scope=STACK,
        minimum=1,
        maximum=86_400,
    )
    send_timeout_s: int = setting(
        60,
        "nginx and the apps' sockets: a client that takes no byte for this long loses its "
        "connection, seconds (stalled readers free what they hold)",
        minimum=1,
        maximum=3600,
    )
    retry_after_s: int = setting(1, "seconds sent in Retry-After", minimum=1, maximum=3600)
    # --- Text cache: ready bodies as files nginx sends (fibod/textcache.py) --------
    text_cache_dir: str = setting(
        "",
        "folder of the fetch host's text cache (derived: STATE_DIR/cache/text)",
        pattern=r"/[^\s]*",
        derive=lambda s: os.path.join(s["state_dir"], "cache", "text"),
    )
    text_cache_bytes: int = setting(
        4 * 1024**3,
        "size cap of the text cache; least recently used files are deleted to stay under "
        "it, larger results are streamed; 0 = no cache",
        minimum=0,
        maximum=2**50,
    )
    text_cache_accel: int = setting(
        1,
        "1 = nginx runs on this fetch host and reads TEXT_CACHE_DIR: cached bodies are "
        "answered with X-Accel-Redirect and sent by nginx; 0 = the text cache is off",
        minimum=0,
        maximum=1,
    )
    # --- Scale-out: several hosts (the defaults are one machine) --------------------
    kafka_node_id: int = setting(
        1,
        "this host's Kafka node id (node.id; unique in the cluster)",
        scope=STACK,
        minimum=1,
        maximum=1000,
    )
    kafka_controller_voters: str = setting(
        "",
        "KRaft controller quorum id@host:port,... (derived: this node alone)",
        scope=STACK,
        pattern=r"[0-9]+@[^\s,@]+:[0-9]+(,[0-9]+@[^\s,@]+:[0-9]+)*",
        derive=lambda s: f"{s['kafka_node_id']}@{s['listen_address']}:{s['kafka_controller_port']}",
    )
    kafka_cluster_id: str = setting(
        "",
        "KRaft cluster id every node is formatted with (22 base64url characters); "
        "empty = each node makes its own on first start (one machine)",
        scope=STACK,
        pattern=r"([A-Za-z0-9_-]{22})?",
    )
    kafka_broker_session_timeout_ms: int = setting(
        9_000,
        "a broker silent this long is fenced out of the ISRs (broker.session.timeout.ms)",
        scope=STACK,
        minimum=500,
        maximum=300_000,
    )
    kafka_broker_heartbeat_ms: int = setting(
        2_000,
        "broker heartbeat to the controller (broker.heartbeat.interval.ms; below the session)",
        scope=STACK,
        minimum=100,
        maximum=60_000,
    )
    kafka_replication_factor: int = setting(
        1, "replicas of the task topic and of Kafka's internal topics", minimum=1, maximum=7
    )
    kafka_min_insync_replicas: int = setting(
        1,
        "replicas that hold a message before Kafka acknowledges it (acks=all)",
        minimum=1,
        maximum=7,
    )
    sequence_redis_cluster: str = setting(
        "",
        "Redis Cluster start-up nodes host:port,...; empty = the one SEQUENCE_REDIS_URL",
        pattern=r"([^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*)?",
    )
    sequence_redis_nodes: int = setting(
        1,
        "sequence-store Redis servers on this host (ports SEQUENCE_REDIS_PORT + 0, 1, ...)",
        scope=STACK,
        minimum=1,
        maximum=16,
    )
    sequence_redis_node_timeout_ms: int = setting(
        2_000,
        "Redis Cluster: a node silent this long is failed over (cluster-node-timeout)",
        scope=STACK,
        minimum=100,
        maximum=600_000,
    )
    task_redis_sentinels: str = setting(
        "",
        "Sentinels of the task store host:port,...; empty = TASK_REDIS_URL directly",
        pattern=r"([^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*)?",
    )
    task_redis_master_name: str = setting(
        "fibod-tasks", "name the Sentinels know the task store's primary by", pattern=_NAME
    )
    task_redis_replica_of: str = setting(
        "",
        "on a task-store replica host: host:port of the primary; empty = a primary",
        scope=STACK,
        pattern=r"([^\s,:]+:[0-9]+)?",
    )
    task_redis_min_replicas: int = setting(
        0,
        "replicas that hold a task write (WAIT) before it is acknowledged",
        minimum=0,
        maximum=5,
    )
    task_redis_wait_ms: int = setting(
        1000,
        "longest wait for those replicas before a write counts as failed, ms",
        minimum=10,
        maximum=60_000,
    )
    sentinel_port: int = setting(
        26379, "Redis Sentinel listener", scope=STACK, minimum=1, maximum=65535
    )
    sentinel_quorum: int = setting(
        2, "Sentinels that must agree the primary is down", scope=STACK, minimum=1, maximum=9
    )
    sentinel_down_after_ms: int = setting(
        2_000,
        "a primary silent this long is down for a Sentinel (down-after-milliseconds)",
        scope=STACK,
        minimum=100,
        maximum=600_000,
    )
    sentinel_failover_timeout_ms: int = setting(
        10_000,
        "Sentinel: longest failover before another Sentinel may retry it",
        scope=STACK,
        minimum=1_000,
        maximum=3_600_000,
    )
    upstream_max_fails: int = setting(
        2,
        "nginx: failed tries that take an app server out (ignored with one server)",
        scope=STACK,
        minimum=0,
        maximum=100,
    )
    upstream_fail_timeout_s: int = setting(
        5,
        "nginx: window of those failures, and how long the server then stays out, seconds",
        scope=STACK,
        minimum=1,
        maximum=3600,
    )
    submit_upstreams: str = setting(
        "",
        "nginx: submit app servers host:port,... (derived: LISTEN_ADDRESS:SUBMIT_PORT)",
        scope=STACK,
        pattern=r"[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*",
        derive=lambda s: f"{s['listen_address']}:{s['submit_port']}",
    )
    fetch_upstreams: str = setting(
        "",
        "nginx: fetch app servers host:port,... (derived: LISTEN_ADDRESS:FETCH_PORT)",
        scope=STACK,
        pattern=r"[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*",
        derive=lambda s: f"{s['listen_address']}:{s['fetch_port']}",
    )
    vip_upstreams: str = setting(
        "",
        "nginx: VIP app servers host:port,... (derived: LISTEN_ADDRESS:VIP_PORT)",
        scope=STACK,
        pattern=r"[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*",
        derive=lambda s: f"{s['listen_address']}:{s['vip_port']}",
    )
    monitor_upstreams: str = setting(
        "",
        "nginx: monitor app servers host:port,... (derived: LISTEN_ADDRESS:MONITOR_PORT)",
        scope=STACK,
        pattern=r"[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*",
        derive=lambda s: f"{s['listen_address']}:{s['monitor_port']}",
    )
    # --- Scripts, tests and benchmarks ------------------------------------------
    up_wait_s: int = setting(
        90,
        "`make up`, `make cluster-up`: longest wait for each part",
        scope=SCRIPT,
        minimum=1,
        maximum=3600,
    )
    up_skip_apps: int = setting(
        0, "`make up`: 1 = start only Redis, Kafka and nginx", scope=SCRIPT, minimum=0, maximum=1
    )
    down_wait_s: int = setting(
        180,
        "`make down`, `make cluster-down`: longest wait for supervisord to stop",
        scope=SCRIPT,
        minimum=1,
        maximum=3600,
    )
    test_stop_stack: int = setting(
        0, "tests: 1 = `make down` when the test session ends", scope=SCRIPT, minimum=0, maximum=1
    )
    bench_sn: int = setting(
        20_000,
        "`make bench`: sn of the kernel micro-benchmarks",
        scope=SCRIPT,
        minimum=1,
        maximum=10_000_000,
    )

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for f in fields(self):
            derive = f.metadata["spec"].derive
            if derive is not None and not values[f.name]:
                values[f.name] = derive(values)
                object.__setattr__(self, f.name, values[f.name])  # frozen: set once, here
        for f in fields(self):
            _check(f.name, values[f.name], f.metadata["spec"])
        if self.fetch_max_waiting >= self.fetch_threads:
            # long-polls could take every thread; streams and quick answers would queue
            raise SettingsError(
                f"FIBOD_FETCH_MAX_WAITING ({self.fetch_max_waiting}) must be below "
                f"FIBOD_FETCH_THREADS ({self.fetch_threads})"
            )
        if self.task_redis_wait_ms >= self.redis_timeout_s * 1000:
            # the client would give up on the socket before WAIT answers
            raise SettingsError(
                f"FIBOD_TASK_REDIS_WAIT_MS ({self.task_redis_wait_ms}) must be below "
                f"FIBOD_REDIS_TIMEOUT_S ({self.redis_timeout_s}) in ms"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from the environment, over FIBOD_ENV_FILE if it names one."""
        env = os.environ if environ is None else environ
        path = env.get(ENV_FILE_VARIABLE)
        return load(env, path or None)

    def to_env(self) -> dict[str, str]:
        """Return every setting as FIBOD_<NAME> -> text (secrets included)."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in fields(self)}


def env_name(name: str) -> str:
    """Return the environment variable of the setting `name`."""
    return ENV_PREFIX + name.upper()


def specs() -> dict[str, tuple[Any, type, Spec]]:
    """Return name -> (default, type, spec) for every setting, in order."""
    return {
        f.name: (f.default, int if f.type in ("int", int) else str, f.metadata["spec"])
        for f in fields(Settings)
    }


def parse_values(raw: Mapping[str, str], origin: str) -> dict[str, Any]:
    """Turn FIBOD_* text values into typed settings; refuse unknown names."""
    table = specs()
    by_env = {env_name(name): name for name in table}
    values: dict[str, Any] = {}
    for key, text in raw.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_FILE_VARIABLE:
            continue
        name = by_env.get(key)
        if name is None:
            import difflib  # only on this error path: the CLI's start-up need not pay for it

            close = difflib.get_close_matches(key, by_env, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(f"{origin}: unknown setting {key}{hint}")
        _default, kind, _spec = table[name]
        if kind is int:
            if not re.fullmatch(r"-?[0-9]{1,19}", text.strip()):
                raise SettingsError(f"{key} must be an integer, got {text!r} ({origin})")
            values[name] = int(text)
        else:
            values[name] = text
    return values


def load(environ: Mapping[str, str] | None = None, env_file: StrPath | None = None) -> Settings:
    """Merge defaults, env_file and environ (FIBOD_* only); derive the rest."""
    values: dict[str, Any] = {}
    if env_file is not None:
        try:
            values |= parse_values(read_env_file(env_file), str(env_file))
        except OSError as exc:
            raise SettingsError(f"cannot read settings file {env_file}: {exc.strerror}") from None
        except EnvFileError as exc:
            raise SettingsError(str(exc)) from None
    env = os.environ if environ is None else environ
    values |= parse_values(env, "environment")
    try:
        return Settings(**values)
    except TypeError as exc:  # a value of the wrong type reached the dataclass
        raise SettingsError(str(exc)) from None


def withheld_from_apps() -> list[str]:
    """Name the secrets the apps never get (stack secrets: admin passwords).

    The scripts that start supervisord leave them out of its environment,
    which every program inherits.
    """
    return [
        env_name(n) for n, (_d, _k, spec) in specs().items() if spec.secret and spec.scope != APP
    ]


def discover_env_file(environ: Mapping[str, str], explicit: str | None = None) -> str | None:
    """Pick the env file a command reads: --env-file, FIBOD_ENV_FILE, or the checkout's.

    The checkout's file is skipped when this user may not read it (it is
    mode 600): commands that need no secrets still run on the defaults.
    """
    if explicit:
        return explicit
    if environ.get(ENV_FILE_VARIABLE):
        return environ[ENV_FILE_VARIABLE]
    if os.path.isfile(CHECKOUT_ENV_FILE) and os.access(CHECKOUT_ENV_FILE, os.R_OK):
        return CHECKOUT_ENV_FILE
    return None


def discover(environ: Mapping[str, str] | None = None, explicit: str | None = None) -> Settings:
    """Load settings the way commands do: the env file they find, then the environment."""
    env = os.environ if environ is None else environ
    return load(env, discover_env_file(env, explicit))


def startup_settings(program: str, exit_code: int) -> Settings:
    """Load a daemon's settings from its environment, or exit with one line."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"fibod {program}: {exc}", file=sys.stderr)
        raise SystemExit(exit_code) from None


def _check(name: str, value: Any, spec: Spec) -> None:
    """Refuse a value outside its range or pattern, naming the variable."""
    key = env_name(name)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SettingsError(f"{key} has an unexpected type: {value!r}")
    if isinstance(value, int):
        if spec.minimum is not None and value < spec.minimum:
            raise SettingsError(f"{key} must be at least {spec.minimum}, got {value}")
        if spec.maximum is not None and value > spec.maximum:
            raise SettingsError(f"{key} must be at most {spec.maximum}, got {value}")
    elif spec.pattern is not None and not re.fullmatch(spec.pattern, value, re.IGNORECASE):
        shown = "(secret)" if spec.secret else repr(value[:80])
        raise SettingsError(f"{key}={shown} does not match {spec.pattern}")


def _allowed(default: Any, kind: type, spec: Spec) -> str:
    if kind is int:
        low = "" if spec.minimum is None else f"{spec.minimum:,}"
        high = "" if spec.maximum is None else f"{spec.maximum:,}"
        return f"{low} .. {high}"
    return f"`{spec.pattern}`" if spec.pattern else "text"


def markdown_table() -> str:
    """Render the settings as the Markdown table of docs/OPERATIONS.md."""
    rows = [
        "| variable | default | allowed | read by | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, (default, kind, spec) in specs().items():
        if spec.secret:
            shown = "random"
        elif spec.derive is not None:
            shown = "derived"
        else:
            shown = str(default)
        allowed = _allowed(default, kind, spec).replace("|", "\\|")
        rows.append(f"| `{env_name(name)}` | {shown} | {allowed} | {spec.scope} | {spec.doc} |")
    return "\n".join(rows) + "\n"


#: Markers around the generated table in docs/OPERATIONS.md.
DOC_BEGIN = "<!-- settings table: generated by `python -m fibod.config --markdown` -->"
DOC_END = "<!-- end of settings table -->"


def with_current_table(doc: str) -> str:
    """Return doc with the text between DOC_BEGIN and DOC_END regenerated."""
    head, begin, rest = doc.partition(DOC_BEGIN)
    _old, end, tail = rest.partition(DOC_END)
    if not begin or not end:
        raise SettingsError(f"the document lacks the markers {DOC_BEGIN!r} ... {DOC_END!r}")
    return f"{head}{DOC_BEGIN}\n{markdown_table()}{DOC_END}{tail}"


def main(argv: list[str] | None = None) -> int:
    """Print the settings table or one setting; refuse bad settings with one line."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown_table())
        return 0
    if args == ["--withheld"]:
        print("\n".join(withheld_from_apps()))
        return 0
    if len(args) == 2 and args[0] == "--update-doc":
        with open(args[1]) as doc:
            text = doc.read()
        with open(args[1], "w") as doc:
            doc.write(with_current_table(text))
        return 0
    if len(args) == 2 and args[0] == "--get" and args[1] in specs():
        try:
            print(getattr(discover(), args[1]))
        except SettingsError as exc:
            print(f"fibod: {exc}", file=sys.stderr)
            return 2
        return 0
    print(
        "usage: python -m fibod.config --markdown | --get NAME | --update-doc FILE", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
