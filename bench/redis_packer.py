"""Send 2 MiB segments to the sequence store with each command packer; print Markdown.

    make up
    .venv/bin/python bench/redis_packer.py [--rounds N]

redis-py packs commands with hiredis when it is installed, which copies
every argument into one buffer; fibod's BulkValueConnection uses redis-py's
own packer, which sends a large value as its own chunk. Both write the
same 200 SETs of 2 MiB to the running stack's sequence store, interleaved
round by round; the figures are medians: throughput, and the client's CPU
seconds per GB sent (what a worker pays on top of encoding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import redis

from fibod.config import discover
from fibod.redis_client import BulkValueConnection, connect

SETS = 200
SEGMENT = 2 << 20


def send(client: redis.Redis, value: bytes) -> tuple[float, float]:
    """SET the value SETS times; return (GB/s, client CPU-s per GB)."""
    client.ping()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(SETS):
        client.set(f"fibod:bench:{i}", value)
    gigabytes = SETS * len(value) / 1e9
    rate = gigabytes / (time.perf_counter() - wall)
    per_gb = (time.process_time() - cpu) / gigabytes
    client.delete(*[f"fibod:bench:{i}" for i in range(SETS)])
    return rate, per_gb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    settings = discover()
    url = settings.sequence_redis_url
    clients = {
        "hiredis's packer (redis-py's default)": connect(url, settings, decode=False, admin=True),
        "redis-py's packer (BulkValueConnection)": connect(
            url, settings, decode=False, admin=True, connection_class=BulkValueConnection
        ),
    }
    value = os.urandom(SEGMENT)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            results[name].append(send(client, value))
    print(f"| packer ({SETS} SETs of 2 MiB, {rounds} rounds) | GB/s | client CPU-s per GB |")
    print("|---|---|---|")
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        per_gb = statistics.median(r[1] for r in runs)
        print(f"| {name} | {rate:.2f} | {per_gb:.2f} |")


if __name__ == "__main__":
    main()
