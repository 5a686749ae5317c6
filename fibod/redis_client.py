"""Redis connections of both stores and their failure translation.

Each store is one Redis server on one machine. Across hosts, the task
store is a primary with a replica behind Sentinels (clients follow a
failover by asking the Sentinels), and the sequence store is a Redis
Cluster (clients route each key to its shard). Every store method runs
inside `unavailable_on_error`, so an outage reaches the web apps as
UnavailableError (503), never as a stack trace.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import redis
from redis._parsers import _HiredisParser
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import PythonRespSerializer
from redis.exceptions import NoPermissionError, OutOfMemoryError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from fibod.config import APP_USER, REDIS_ADMIN_USER, Settings
from fibod.errors import StoreAuthError, UnavailableError

P = ParamSpec("P")
R = TypeVar("R")


#: Retries of a Redis Cluster command that met a moved slot or a dead master.
CLUSTER_RETRIES = 3
#: A client of either store: one server, or a Redis Cluster.
RedisClient = redis.Redis | RedisCluster


#: A reply at least this large leaves its connection with a fresh hiredis reader.
LARGE_REPLY_BYTES = 64 * 1024


class SegmentReplies(_HiredisParser):
    """hiredis's parser, which gives a large reply's buffer back once it is read.

    hiredis reads a reply into a buffer that grows to the reply's size and
    keeps it, emptied, until the connection's next reply arrives: every
    idle pooled connection that last read a 2 MiB segment held about
    3 MiB. A fresh reader (when nothing more is buffered) frees it now;
    the next large reply grows a buffer just as it would have.
    """

    def on_connect(self, connection: Any, **kwargs: Any) -> None:
        super().on_connect(connection, **kwargs)
        self._connection = weakref.ref(connection)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().read_response(*args, **kwargs)
        reader, connection = self._reader, self._connection()
        large = isinstance(response, bytes) and len(response) >= LARGE_REPLY_BYTES
        if large and reader is not None and not reader.has_data() and connection is not None:
            super().on_connect(connection)  # a new reader; the socket stays
        return response


class BulkValueConnection(redis.Connection):
    """A connection for 2 MiB values: sends them as they are, keeps no reply buffer.

    redis-py packs commands with hiredis when it is installed, which copies
    every argument into one buffer: on 2 MiB segments that cost a worker
    about 2 CPU-s per GB stored against 0.2-0.35 with redis-py's own
    packer, which sends a value over 6,000 bytes as its own chunk
    (bench/redis_packer.py, docs/BENCHMARKS.md). Replies are parsed by
    hiredis (faster on segments than redis-py's parser), through
    SegmentReplies.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", SegmentReplies)
        super().__init__(**kwargs)

    def _construct_command_packer(self, packer: object) -> object:
        return packer or PythonRespSerializer(self._buffer_cutoff, self.encoder.encode)


def _client_options(settings: Settings, admin: bool = False) -> dict[str, object]:
    """Options every client shares: the user, its password and bounded timeouts.

    The apps log in as APP_USER; `admin` (the CLI's cache commands, health
    checks, tests) as REDIS_ADMIN_USER, whose password the apps never get. No
    password at all logs in as Redis's default user.
    """
    if admin:
        user, password = REDIS_ADMIN_USER, settings.redis_admin_password
    else:
        user, password = APP_USER, settings.redis_password
    return {
        "username": user if password else None,
        "password": password or None,
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "socket_keepalive": True,
    }


def host_ports(text: str) -> list[tuple[str, int]]:
    """Split "host:port,host:port" (a setting already checked by the model)."""
    pairs = []
    for item in text.split(","):
        host, _, port = item.strip().rpartition(":")
        pairs.append((host, int(port)))
    return pairs


def connect(
    url: str,
    settings: Settings,
    *,
    decode: bool,
    admin: bool = False,
    connection_class: type[redis.Connection] = redis.Connection,
) -> redis.Redis:
    """Open a pooled, thread-safe client of one server."""
    return redis.Redis.from_url(  # type: ignore[call-overload]  # decode is chosen at run time
        url,
        decode_responses=decode,
        health_check_interval=30,
        retry_on_timeout=False,
        connection_class=connection_class,
        **_client_options(settings, admin),
    )


def connect_task_store(settings: Settings, admin: bool = False) -> redis.Redis:
    """Open the task store: its primary, found by the Sentinels when there are some."""
    if not settings.task_redis_sentinels:
        return connect(settings.task_redis_url, settings, decode=True, admin=admin)
    options = _client_options(settings, admin)
    sentinel = Sentinel(
        host_ports(settings.task_redis_sentinels),
        sentinel_kwargs={
            "username": options["username"],
            "password": options["password"],
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s,
        },
        **options,
    )
    return sentinel.master_for(  # type: ignore[no-any-return]
        settings.task_redis_master_name, decode_responses=True, **options
    )


def connect_sequence_store(settings: Settings, admin: bool = False) -> RedisClient:
    """Open the sequence store: one server, or a Redis Cluster from its start-up nodes."""
    if not settings.sequence_redis_cluster:
        return connect(
            settings.sequence_redis_url,
            settings,
            decode=False,
            admin=admin,
            connection_class=BulkValueConnection,
        )
    pairs = host_ports(settings.sequence_redis_cluster)
    # from_url: only then does RedisCluster build each node's pool with
    # connection_class (its other path hands the option to Redis(), which
    # has no such argument); the other start-up nodes come as a list.
    first_host, first_port = pairs[0]
    bracketed = f"[{first_host}]" if ":" in first_host else first_host
    return RedisCluster.from_url(
        f"redis://{bracketed}:{first_port}",
        startup_nodes=[ClusterNode(host, port) for host, port in pairs[1:]],
        connection_class=BulkValueConnection,
        decode_responses=False,
        # A failover takes a few seconds: retry with the slot map read again
        # rather than fail the first command that meets the dead master.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), CLUSTER_RETRIES),
        **_client_options(settings, admin),  # type: ignore[arg-type]
    )


@contextmanager
def unavailable_on_error(what: str) -> Iterator[None]:
    """Turn any Redis failure into UnavailableError naming the store."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise StoreAuthError(
            f"{what} refused the password ({exc}): check FIBOD_REDIS_PASSWORD, or point "
            "FIBOD_ENV_FILE / --env-file at the stack's settings (var/conf/fibod.env)"
        ) from exc
    except NoPermissionError as exc:
        raise StoreAuthError(
            f"{what} refused the command to this Redis user ({exc}): it needs the admin "
            "user's password (FIBOD_REDIS_ADMIN_PASSWORD, in var/conf/fibod.env)"
        ) from exc
    except OutOfMemoryError as exc:
        raise UnavailableError(
            f"{what} is full (its maxmemory is reached) and refuses writes: {exc}"
        ) from exc
    except (redis.RedisError, RedisClusterException) as exc:
        raise UnavailableError(f"{what} unavailable: {exc}") from exc


def store_call(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a store method so Redis failures become UnavailableError."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with unavailable_on_error(what):
                return func(*args, **kwargs)

        return wrapper

    return decorate
