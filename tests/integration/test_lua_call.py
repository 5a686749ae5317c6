"""LuaCall against the real task store: a script the server lacks, connections per thread."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

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


@pytest.fixture
def named(settings: Settings, task_redis: redis.Redis) -> Iterator[redis.Redis]:
    """A task store client whose connections give the server a name of this test's own."""
    task_redis.delete(KEY)
    client = connect_task_store(settings, admin=True)
    client.connection_pool.connection_kwargs["client_name"] = f"fibod-lua-{uuid.uuid4().hex}"
    yield client
    client.close()


def _named_ids(client: redis.Redis, task_redis: redis.Redis) -> set[str]:
    """Server-side ids of the connections open with the client's name."""
    name = client.connection_pool.connection_kwargs["client_name"]
    return {c["id"] for c in task_redis.client_list() if c.get("name") == name}


def _local_port(call: LuaCall) -> int:
    """The local port of this thread's connection: which socket the last call used."""
    return int(call._local.connection._sock.getsockname()[1])


def test_each_thread_keeps_one_connection_for_all_its_calls(named, task_redis) -> None:
    # given a LuaCall
    call = LuaCall(named, SCRIPT)
    # when three threads call it three times each
    with ThreadPoolExecutor(3) as pool:
        barrier = threading.Barrier(3)

        def three_calls(n: int) -> list[int]:
            barrier.wait()  # all three threads at once: none reuses another's thread
            ports = []
            for i in range(3):
                call([KEY], [f"{n}-{i}"])
                ports.append(_local_port(call))
            return ports

        ports = list(pool.map(three_calls, range(3)))
        # then each thread made its three calls on one socket, its own
        assert all(len(set(each)) == 1 for each in ports)
        assert len({each[0] for each in ports}) == 3
        # and the server saw exactly those three connections, still open
        assert len(_named_ids(named, task_redis)) == 3
    # and the client's pool was not used
    assert named.connection_pool._created_connections == 0


def test_a_connection_the_server_closed_is_opened_again_before_the_call(named, task_redis) -> None:
    call = LuaCall(named, SCRIPT)
    call([KEY], ["one"])
    # given the server closed this thread's connection
    before = _named_ids(named, task_redis)
    assert len(before) == 1
    task_redis.client_kill_filter(_id=next(iter(before)))
    # when the script is called again
    reply = call([KEY], ["two"])
    # then it ran, on a new connection
    assert reply == ["one", "fibod-lua-call-test"]
    after = _named_ids(named, task_redis)
    assert len(after) == 1 and after != before


def test_a_forked_child_calls_on_its_own_connection(named, task_redis) -> None:
    # given a LuaCall that has a connection in this process
    call = LuaCall(named, SCRIPT)
    call([KEY], ["parent"])
    parent_port = _local_port(call)
    # when a forked child calls it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the reply and the socket it used, then leave at once
        code = 1
        try:
            reply = call([KEY], ["child"])
            os.write(write, json.dumps([reply, _local_port(call)]).encode())
            code = 0
        except BaseException as exc:  # reported to the parent
            os.write(write, json.dumps(["error", repr(exc)]).encode())
        finally:
            os._exit(code)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 30)
        report = os.read(read, 10_000).decode() if ready else ""
    finally:
        os.close(read)
        if not report:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert report, "the child answered nothing within 30 s"
    child_reply, child_port = json.loads(report)
    assert os.waitstatus_to_exitcode(status) == 0, child_port
    # then the child ran it on a socket of its own, and the parent's still works
    assert child_reply == ["parent", "fibod-lua-call-test"]
    assert child_port != parent_port
    assert call([KEY], ["parent again"]) == ["child", "fibod-lua-call-test"]
    assert _local_port(call) == parent_port
