"""A Lua script called on the thread's own connection, without redis-py's per-command machinery.

The submit app runs one command per request: the task's create script.
redis-py 8 wraps every command in a retry closure, argument filters and
observability hooks, and its pool's checkout and return record
connection counts for its own metrics; together they cost more client
CPU than sending the command and reading its reply
(bench/task_create.py). Here a call is EVALSHA (EVAL once when the
server lacks the script) on a connection this thread keeps, made with
the client's pool settings (Sentinel routing, timeouts, health checks,
reply parsing). Each thread holds one such connection for as long as it
lives: the submit app's request threads are few and fixed. As the pool
does, a connection is checked before each use: one the server closed,
or with bytes nobody asked for, is opened again. Like fibod's clients
(no retries), a failed call is not sent again; a connection that failed
mid-call is closed, so no late reply can answer the next call.
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
        if not clean:
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
