"""The sequence store's client against its real server: a read segment leaves no buffer behind."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from fibod.config import Settings
from fibod.memory import release_free_memory
from fibod.redis_client import BulkValueConnection, connect_sequence_store
from tests.integration.faults import rss_kib

SEGMENT = 2 << 20
#: Connections of one pool that each read one segment, then sit idle.
POOLED = 10
#: What those idle connections may still hold. hiredis's own reader kept
#: each one's ~2 MiB buffer: about 20 MB in all (measured 2026-11-30).
KEPT_LIMIT_KIB = 6 * 1024


@pytest.fixture
def segments(settings: Settings) -> Iterator[tuple[redis.Redis, list[str], list[bytes]]]:
    client = connect_sequence_store(settings, admin=True)
    assert isinstance(client, redis.Redis)
    keys = [f"fibod:test:segment-replies:{i}" for i in range(POOLED)]
    values = [os.urandom(SEGMENT) for _ in keys]
    for key, value in zip(keys, values, strict=True):
        client.set(key, value)
    yield client, keys, values
    client.delete(*keys)
    client.close()


def test_idle_connections_keep_no_segment_sized_buffer(segments) -> None:
    client, keys, values = segments
    pool = client.connection_pool
    assert pool.connection_class is BulkValueConnection
    # given POOLED connections, each connected
    held = [pool.get_connection() for _ in keys]
    try:
        for connection in held:
            connection.send_command("PING")
            connection.read_response()
        readers = [id(connection._parser._reader) for connection in held]  # ids: keep none alive
        release_free_memory()
        before = rss_kib(os.getpid())
        # when each reads one 2 MiB segment, then sits idle
        for connection, key, value in zip(held, keys, values, strict=True):
            connection.send_command("GET", key)
            assert connection.read_response() == value
        release_free_memory()
        kept = rss_kib(os.getpid()) - before
        # then each got a fresh reader, and they hold next to nothing
        assert all(id(c._parser._reader) != r for c, r in zip(held, readers, strict=True))
        assert kept < KEPT_LIMIT_KIB, kept
        # and a small reply keeps its reader: only large ones pay for a new one
        small_reader = held[0]._parser._reader
        held[0].send_command("PING")
        assert held[0].read_response() in (b"PONG", "PONG", True)
        assert held[0]._parser._reader is small_reader
    finally:
        for connection in held:
            pool.release(connection)


def test_pipelined_segments_all_arrive_whole(segments) -> None:
    client, keys, values = segments
    # when several segments come back in one pipeline (replies already
    # buffered behind a large one must not be dropped with its reader)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
            pipe.strlen(key)
        replies = pipe.execute()
    # then every reply is there, in order
    assert replies[0::2] == values
    assert replies[1::2] == [SEGMENT] * len(keys)
