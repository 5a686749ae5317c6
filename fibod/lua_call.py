"""A Lua script called on the thread's own connection, without redis-py's per-command machinery.

The submit app runs one command per request: the task's create script.
redis-py 8 wraps every command in a retry closure, argument filters and
observability hooks, and its pool's checkout and return record
connection counts for its own metrics; together they cost more client
CPU than sending the command and reading its reply
(bench/task_create.py, bench/submit_app.py). Here a call is EVALSHA
(EVAL once when the server lacks the script) on a connection this
thread keeps, made with the client's pool settings (Sentinel routing,
timeouts, health-check PINGs, reply parsing). Each thread holds one such
connection for as long as it lives, outside the pool (so beside its
count, and not closed by the client's close()): the submit app's request
threads are few and fixed. Before each use a connection is opened again
when the server closed it, when bytes nobody asked for wait on it, or
when the Sentinels have named another primary since it connected (what
the pool checks when a connection comes back). RESP3 maintenance
notifications, which the pool can follow, are not followed here; the
task store sends none (Redis 7). Like fibod's clients (no retries), a
failed call is not sent again; a connection that failed mid-call is
closed, so no late reply can answer the next call.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT


def stale_primary(pool: object, connection: object) -> bool:
    """Whether a Sentinel-managed primary connection points at a server no longer primary.

    The pool learns the primary's address when any of its connections
    connects; a connection elsewhere is one a failover left behind.
    """
    if not getattr(pool, "is_master", False):
        return False  # a plain pool, or replicas
    known = getattr(pool, "master_address", None)
    where = (getattr(connection, "host", None), getattr(connection, "port", None))
    return known is not None and tuple(known) != where


class LuaCall:
    """Call one Lua script with keys and arguments; return its reply."""

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._pool = client.connection_pool
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._local = threading.local()

    def __call__(self, keys: Sequence[str], args: Sequence[EncodableT]) -> object:
        connection = self._connection()
        try:
            return self._run(connection, keys, args)
        except ResponseError:
            raise  # the reply was read whole: the connection is clean
        except BaseException:
            connection.disconnect()
            raise

    def _connection(self) -> redis.Connection:
        """This thread's connection, connected and with nothing unread on it."""
        local = self._local
        connection: redis.Connection | None = getattr(local, "connection", None)
        if connection is None or local.pid != os.getpid():  # first call, or a forked child
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            local.connection, local.pid = connection, os.getpid()
        connection.connect()  # at once when connected
        try:
            clean = not connection.can_read()
        except (RedisConnectionError, RedisTimeoutError, OSError):  # closed by the server
            clean = False
        if not clean or stale_primary(self._pool, connection):
            connection.disconnect()
            connection.connect()
        return connection

    def _run(
        self, connection: redis.Connection, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> object:
        connection.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return connection.read_response()
        except NoScriptError:  # a restarted or new server: EVAL caches it there
            connection.send_command("EVAL", self._script, len(keys), *keys, *args)
            return connection.read_response()
