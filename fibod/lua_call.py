"""A Lua script called on a pooled connection, without redis-py's per-command machinery.

The submit app runs one command per request: the task's create script.
redis-py 8 wraps every command in a retry closure, argument filters and
observability hooks; that machinery cost more client CPU than sending
the command and reading its reply (bench/task_create.py). Here a call is
EVALSHA on a connection from the client's own pool (EVAL once when the
server lacks the script), with the pool's health checks, its check of
idle connections the server closed, Sentinel routing and reply parsing
as before. Like fibod's clients (no retries), a failed call is not sent
again; a connection that failed mid-call is closed, so no late reply
can answer the next call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import EncodableT


class LuaCall:
    """Call one Lua script with keys and arguments; return its reply."""

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._pool = client.connection_pool
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()

    def __call__(self, keys: Sequence[str], args: Sequence[EncodableT]) -> object:
        connection = self._pool.get_connection()
        try:
            return self._run(connection, keys, args)
        except ResponseError:
            raise  # the reply was read whole: the connection is clean
        except BaseException:
            connection.disconnect()
            raise
        finally:
            self._pool.release(connection)

    def _run(
        self, connection: redis.Connection, keys: Sequence[str], args: Sequence[EncodableT]
    ) -> object:
        connection.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
        try:
            return connection.read_response()
        except NoScriptError:  # a restarted or new server: EVAL caches it there
            connection.send_command("EVAL", self._script, len(keys), *keys, *args)
            return connection.read_response()
