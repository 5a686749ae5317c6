"""LuaCall's check for a connection a Sentinel failover left behind (pure logic, no server)."""

from __future__ import annotations

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from fibod.lua_call import stale_primary


def _primary_pool(address: tuple[str, int] | None) -> SentinelConnectionPool:
    """A primary pool whose Sentinels last named `address` (nothing is connected)."""
    pool = SentinelConnectionPool("fibod-tasks", Sentinel([("127.0.0.1", 1)]), is_master=True)
    pool.proxy.master_address = address
    return pool


def _connected_to(pool: SentinelConnectionPool, host: str, port: int) -> SentinelManagedConnection:
    connection = SentinelManagedConnection(**pool.connection_kwargs)
    connection.host, connection.port = host, port
    return connection


def test_a_connection_to_the_named_primary_is_kept() -> None:
    pool = _primary_pool(("10.77.0.51", 6391))
    assert not stale_primary(pool, _connected_to(pool, "10.77.0.51", 6391))


def test_a_connection_to_the_old_primary_after_a_failover_is_stale() -> None:
    # given a connection made to .51, then the Sentinels named .52
    pool = _primary_pool(("10.77.0.51", 6391))
    connection = _connected_to(pool, "10.77.0.51", 6391)
    pool.proxy.master_address = ("10.77.0.52", 6391)
    # then it is stale
    assert stale_primary(pool, connection)


def test_no_primary_known_yet_or_no_sentinels_is_never_stale() -> None:
    pool = _primary_pool(None)
    assert not stale_primary(pool, _connected_to(pool, "10.77.0.51", 6391))
    plain = redis.ConnectionPool(host="127.0.0.1", port=6391)
    assert not stale_primary(plain, redis.Connection(host="127.0.0.1", port=6391))
