"""How the sequence store's client sends segments: large values never copied."""

from __future__ import annotations

import os

from redis.cluster import RedisCluster

from fibod.config import Settings
from fibod.redis_client import BulkValueConnection, connect_sequence_store


def test_a_large_value_is_sent_as_its_own_chunk_not_copied() -> None:
    # given a connection of the sequence store's kind (not connected: packing only)
    connection = BulkValueConnection()
    segment = os.urandom(2 << 20)
    # when a SET of a 2 MiB segment is packed
    chunks = connection.pack_command("SET", "fibod:seg:{2097152:7}", segment, "NX")
    # then the segment itself is one of the chunks (the same object), and the
    # whole is the protocol's bytes for that command
    assert any(chunk is segment for chunk in chunks)
    wire = b"".join(bytes(chunk) for chunk in chunks)
    assert wire.startswith(b"*4\r\n$3\r\nSET\r\n$21\r\nfibod:seg:{2097152:7}\r\n$2097152\r\n")
    assert wire.endswith(segment + b"\r\n$2\r\nNX\r\n")


def test_the_sequence_store_client_uses_it_on_one_server() -> None:
    settings = Settings.from_env({"FIBOD_SEQUENCE_REDIS_URL": "redis://127.0.0.1:1/0"})
    client = connect_sequence_store(settings)
    assert not isinstance(client, RedisCluster)
    assert client.connection_pool.connection_class is BulkValueConnection
