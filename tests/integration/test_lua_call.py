"""LuaCall against the real task store: a script the server lacks, a connection it closed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from fibod.config import Settings
from fibod.lua_call import LuaCall
from fibod.redis_client import connect_task_store

#: Sets a key to an argument and answers what it held before, with a marker.
SCRIPT = """
local before = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'EX', 60)
return {before or '', 'fibod-lua-call-test'}
"""
KEY = "fibod:test:lua-call"


@pytest.fixture
def client(settings: Settings, task_redis: redis.Redis) -> Iterator[redis.Redis]:
    task_redis.delete(KEY)
    client = connect_task_store(settings, admin=True)
    yield client
    client.close()


def _evals(task_redis: redis.Redis) -> int:
    return int(task_redis.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


def test_a_script_the_server_lacks_is_sent_whole_once(client, task_redis) -> None:
    # given a server that holds no copy of the script
    call = LuaCall(client, SCRIPT)
    task_redis.script_flush()  # the stack's own scripts are sent again when next used
    evals = _evals(task_redis)
    # when it is called twice
    first = call([KEY], ["one"])
    second = call([KEY], ["two"])
    # then both ran, in order; the script was sent whole once, then called by its hash
    assert first == ["", "fibod-lua-call-test"]
    assert second == ["one", "fibod-lua-call-test"]
    assert task_redis.script_exists(call._sha) == [True]
    assert _evals(task_redis) - evals == 1


def test_a_pooled_connection_the_server_closed_is_reconnected_first(client, task_redis) -> None:
    call = LuaCall(client, SCRIPT)
    call([KEY], ["one"])
    # given the server closed the client's pooled connection
    named = client.connection_pool.get_connection()
    named.send_command("CLIENT", "SETNAME", "fibod-lua-call-test")
    assert named.read_response() in (b"OK", "OK", True)
    client.connection_pool.release(named)
    killed = [c for c in task_redis.client_list() if c.get("name") == "fibod-lua-call-test"]
    assert killed, "the named connection is not on the server"
    for c in killed:
        task_redis.client_kill_filter(_id=c["id"])
    # when the script is called again
    reply = call([KEY], ["two"])
    # then it ran, on a fresh connection (the pool found the closed one on taking it)
    assert reply == ["one", "fibod-lua-call-test"]
    names = [c.get("name") for c in task_redis.client_list()]
    assert "fibod-lua-call-test" not in names
