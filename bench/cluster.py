"""Measure the multi-host rehearsal; print Markdown for docs/BENCHMARKS.md.

    make cluster-up && .venv/bin/python bench/cluster.py [--rounds 3] [--sn 100000]

1. One huge request computed cold by 1 worker host, then by 2 (the other
   worker host's worker stopped, then started), interleaved round by
   round: segments per second, median, and the 2-to-1 ratio.
2. How evenly the segments and their memory spread over the Redis
   Cluster's masters (max/min over masters).
3. The largest sn (FIBOD_MAX_SN) served end to end through the entry URL:
   cold submit to ready, then the whole answer hashed and compared with
   gmpy2's text.
4. The recovery times the fault tests recorded (var/cluster-figures.jsonl).

Needs root and a running rehearsal (`make cluster-up`); leaves it running.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from xmlrpc.client import ServerProxy

import gmpy2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from inventory import load_inventory, state_dir  # noqa: E402

from fibod.config import Settings, load  # noqa: E402
from fibod.sequences import SequenceStore  # noqa: E402

FIGURES = ROOT / "var" / "cluster-figures.jsonl"


def host_settings(name: str) -> Settings:
    """The settings the rehearsal rendered for a host."""
    inventory = load_inventory()
    return load({}, state_dir(inventory.host(name)) / "conf" / "fibod.env")


def supervisor(name: str) -> ServerProxy:
    """The XML-RPC interface of a host's supervisord (its unix socket)."""
    from supervisor.xmlrpc import SupervisorTransport

    sock = state_dir(load_inventory().host(name)) / "run" / "supervisor.sock"
    transport = SupervisorTransport(None, None, f"unix://{sock}")
    return ServerProxy("http://127.0.0.1", transport=transport).supervisor  # type: ignore[no-any-return]


def submit(base: str, sn: int) -> str:
    with urllib.request.urlopen(f"{base}/myapp/fibo?sn={sn}", timeout=30) as resp:
        return resp.read().decode()


def wait_ready(base: str, task_id: str, timeout_s: float = 600) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/myapp/tasks/{task_id}", timeout=30) as resp:
            task = json.loads(resp.read())
        if task["state"] in ("ready", "failed"):
            return task
        time.sleep(0.05)
    raise SystemExit(f"task {task_id} not ready in {timeout_s} s")


def cold_run(base: str, store: SequenceStore, sn: int) -> tuple[float, int, str]:
    """Clear the store, compute sn; return (seconds submit to ready, segments, task id)."""
    store.clear()
    started = time.perf_counter()
    task_id = submit(base, sn)
    task = wait_ready(base, task_id)
    elapsed = time.perf_counter() - started
    assert task["state"] == "ready", task
    return elapsed, len(store.layout.covering(sn)), task_id


def scaling(base: str, store: SequenceStore, sn: int, rounds: int) -> list[str]:
    """Segments per second with 1 and 2 worker hosts, interleaved."""
    other = supervisor("worker-b")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for workers in (1, 2):
            if workers == 1:
                other.stopProcessGroup("worker", True)
            else:
                other.startProcessGroup("worker", True)
                time.sleep(12)  # the group rebalances; partitions spread again
            seconds, segments, _ = cold_run(base, store, sn)
            rates[workers].append(segments / seconds)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    return [
        f"| cold sn={sn:,} ({segments} segments), 1 worker host | {one:.1f} segments/s |",
        f"| the same, 2 worker hosts | {two:.1f} segments/s (**{two / one:.2f}x**) |",
    ]


def spread(store: SequenceStore) -> list[str]:
    nodes = store.node_stats()
    keys = [n.keys for n in nodes]
    memory = [n.used_memory for n in nodes]
    return [
        f"| keys per master ({len(nodes)} masters) | {keys}, "
        f"max/min **{max(keys) / min(keys):.2f}** |",
        f"| memory per master, MB | {[round(m / 1e6) for m in memory]}, max/min "
        f"**{max(memory) / min(memory):.2f}** |",
    ]


def reference_sha256(sn: int) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    a, b = gmpy2.mpz(0), gmpy2.mpz(1)
    for _ in range(sn):
        text = a.digits().encode() + b" "
        hasher.update(text)
        size += len(text)
        a, b = b, a + b
    return size, hasher.hexdigest()


def largest(base: str, store: SequenceStore, sn: int) -> list[str]:
    seconds, segments, task_id = cold_run(base, store, sn)
    hasher, size = hashlib.sha256(), 0
    started = time.perf_counter()
    with urllib.request.urlopen(f"{base}/myapp/fibotask?id={task_id}", timeout=600) as resp:
        first = resp.read(1)
        while chunk := resp.read(1 << 22):
            hasher.update(chunk)
            size += len(chunk)
    fetch_s = time.perf_counter() - started
    want_size, want_sha = reference_sha256(sn)
    right = first == b"\x00" and (size, hasher.hexdigest()) == (want_size, want_sha)
    return [
        f"| largest sn served (FIBOD_MAX_SN) | sn={sn:,}: {size / 1e9:.2f} GB, cold in "
        f"{seconds:.1f} s ({segments} segments), fetched in {fetch_s:.1f} s "
        f"({size / fetch_s / 1e9:.2f} GB/s), {'every byte right' if right else 'WRONG BYTES'} |",
    ]


def recorded() -> list[str]:
    if not FIGURES.exists():
        return ["| recovery times | none recorded: run `make cluster-test` first |"]
    rows = []
    for line in FIGURES.read_text().splitlines():
        fig = json.loads(line)
        name = fig.pop("test").removeprefix("test_")
        fig.pop("at", None)
        rows.append(f"| {name} | {', '.join(f'{k}={v}' for k, v in fig.items())} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sn", type=int, default=100_000)
    parser.add_argument("--skip-largest", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    worker = host_settings("worker-a")
    base = host_settings("nginx").base_url
    store = SequenceStore.from_settings(worker, admin=True)
    print("| figure | measured |\n|---|---|")
    if not args.skip_scaling:
        for row in scaling(base, store, args.sn, args.rounds):
            print(row, flush=True)
    for row in spread(store):
        print(row, flush=True)
    if not args.skip_largest:
        for row in largest(base, store, worker.max_sn):
            print(row, flush=True)
    for row in recorded():
        print(row)


if __name__ == "__main__":
    main()
