"""Make and check the Redis layouts that span hosts.

The sequence store is a Redis Cluster of FIBOD_SEQUENCE_REDIS_NODES nodes
per host, 3 masters + 3 replicas in the rehearsal. It must be "crossed":
no host holds two masters (losing it would leave the masters without the
majority a failover needs) and no master's replica sits on the master's
host (losing it would lose the shard). The task store is one primary with
replicas, watched by Sentinels that must agree on the primary.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import redis

from fibod.config import REDIS_ADMIN_USER

#: Seconds one Redis command of these checks may take.
COMMAND_TIMEOUT_S = 3.0
#: Seconds between two looks while waiting for the layout to settle.
PAUSE_S = 0.5
#: Most repairs tried before the layout is declared broken.
MAX_REPAIRS = 6

T = TypeVar("T")


class TopologyError(RuntimeError):
    """A Redis layout is not (and could not be made) what it must be."""


def client(address: str, password: str) -> redis.Redis:
    """Open a client to host:port as the admin user, with short timeouts."""
    host, port = address.rsplit(":", 1)
    c = redis.Redis(
        host=host,
        port=int(port),
        username=REDIS_ADMIN_USER,
        password=password,
        decode_responses=True,
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
    )
    # The text of CLUSTER NODES, as redis-cli shows it (parse_nodes reads it).
    c.set_response_callback("CLUSTER NODES", lambda response, **_options: response)
    return c


def wait_until(check: Callable[[], T | None], wait_s: float, what: str) -> T:
    """Call check until it returns a value; raise TopologyError after wait_s."""
    deadline = time.monotonic() + wait_s
    problem = "no answer yet"
    while True:
        try:
            value = check()
            if value is not None:
                return value
        except (redis.RedisError, TopologyError) as exc:
            problem = str(exc)
        if time.monotonic() >= deadline:
            raise TopologyError(f"{what}: not reached within {wait_s:.0f} s ({problem})")
        time.sleep(PAUSE_S)


@dataclass(frozen=True)
class Node:
    """One line of CLUSTER NODES."""

    id: str
    address: str
    role: str  # "master" or "replica"
    master_id: str  # "-" for a master
    slots: int
    failing: bool

    @property
    def host(self) -> str:
        """Return the node's IP address (its host)."""
        return self.address.rsplit(":", 1)[0]


def parse_nodes(text: str) -> list[Node]:
    """Parse CLUSTER NODES output."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = fields[2].split(",")
        slots = 0
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated
            low, _, high = part.partition("-")
            slots += int(high or low) - int(low) + 1
        nodes.append(
            Node(
                id=fields[0],
                address=fields[1].split("@")[0],
                role="master" if "master" in flags else "replica",
                master_id=fields[3],
                slots=slots,
                failing=any(flag in ("fail", "fail?", "handshake", "noaddr") for flag in flags),
            )
        )
    return nodes


def layout_problems(nodes: list[Node]) -> list[str]:
    """Return what keeps the layout from being crossed over hosts (empty = fine)."""
    by_id = {node.id: node for node in nodes}
    masters = [node for node in nodes if node.role == "master" and node.slots]
    problems = [
        f"{host} holds {count} masters"
        for host, count in Counter(m.host for m in masters).items()
        if count > 1
    ]
    for master in masters:
        replicas = [n for n in nodes if n.master_id == master.id]
        if not replicas:
            problems.append(f"master {master.address} has no replica")
        problems += [
            f"replica {r.address} sits on the host of its master {master.address}"
            for r in replicas
            if r.host == master.host
        ]
    problems += [
        f"replica {n.address} follows an unknown master"
        for n in nodes
        if n.role == "replica" and n.master_id not in by_id
    ]
    return problems


def signature(nodes: list[Node]) -> list[tuple[str, str, str]]:
    """Return who is master or replica of whom, comparable between views."""
    return sorted((n.id, n.role, n.master_id) for n in nodes)


def settled_view(addresses: list[str], password: str) -> list[Node]:
    """Return the cluster as every node sees it alike; raise while they differ."""
    views = []
    for address in addresses:
        c = client(address, password)
        try:
            info = c.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
            if info["cluster_state"] != "ok":
                raise TopologyError(f"{address}: cluster_state is not ok")
            nodes = parse_nodes(c.execute_command("CLUSTER NODES"))
        finally:
            c.close()
        if len(nodes) != len(addresses) or any(n.failing for n in nodes):
            raise TopologyError(f"{address} sees {len(nodes)} nodes or a failing one")
        views.append(signature(nodes))
    if any(view != views[0] for view in views):
        raise TopologyError("the nodes do not agree on the layout yet")
    c = client(addresses[0], password)
    try:
        return parse_nodes(c.execute_command("CLUSTER NODES"))
    finally:
        c.close()


def create_cluster(addresses: list[str], password: str, replicas: int) -> None:
    """Create the cluster with redis-cli (it spreads masters and replicas over hosts)."""
    argv = [
        "redis-cli",
        "--user",
        REDIS_ADMIN_USER,
        "--cluster",
        "create",
        *addresses,
        "--cluster-yes",
    ]
    result = subprocess.run(
        [*argv, "--cluster-replicas", str(replicas)],
        env=os.environ | {"REDISCLI_AUTH": password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise TopologyError(f"redis-cli --cluster create failed: {result.stdout[-2000:]}")


def repair(nodes: list[Node], password: str) -> str:
    """Make one move toward a crossed layout; return what was done."""
    by_id = {node.id: node for node in nodes}
    masters = [n for n in nodes if n.role == "master" and n.slots]
    master_hosts = Counter(m.host for m in masters)
    replicas = [n for n in nodes if n.role == "replica" and n.master_id in by_id]
    # A host with two masters: promote a replica of one of them that sits
    # on a host without a master (CLUSTER FAILOVER: no data is lost).
    for replica in replicas:
        master = by_id[replica.master_id]
        if master_hosts[master.host] > 1 and master_hosts[replica.host] == 0:
            c = client(replica.address, password)
            try:
                c.execute_command("CLUSTER FAILOVER")
            finally:
                c.close()
            return f"failover of {master.address} to {replica.address}"
    # A master without a replica: take one from a master that has two.
    followers = Counter(r.master_id for r in replicas)
    for master in masters:
        if followers[master.id]:
            continue
        for replica in replicas:
            if followers[replica.master_id] > 1 and replica.host != master.host:
                _replicate(replica, master, password)
                return f"moved {replica.address} to follow {master.address}"
    # A replica on its master's host: swap masters with a replica elsewhere.
    for replica in replicas:
        master = by_id[replica.master_id]
        if replica.host != master.host:
            continue
        for other in replicas:
            other_master = by_id[other.master_id]
            if other_master.host != replica.host and other.host != master.host:
                _replicate(replica, other_master, password)
                _replicate(other, master, password)
                return f"swapped the masters of {replica.address} and {other.address}"
    raise TopologyError("cannot cross the layout: " + "; ".join(layout_problems(nodes)))


def _replicate(replica: Node, master: Node, password: str) -> None:
    """Make replica follow master (CLUSTER REPLICATE)."""
    c = client(replica.address, password)
    try:
        c.execute_command("CLUSTER REPLICATE", master.id)
    finally:
        c.close()


def ensure_cluster(addresses: list[str], password: str, wait_s: float) -> str:
    """Create the sequence store's cluster once and cross it; return what was done."""
    known = []
    for address in addresses:
        c = client(address, password)
        try:
            info = c.execute_command("CLUSTER INFO")
        finally:
            c.close()
        known.append(int(info["cluster_known_nodes"]))
    done = []
    if all(count == 1 for count in known):
        create_cluster(addresses, password, replicas=1)
        done.append(f"created from {len(addresses)} nodes")
    elif any(count != len(addresses) for count in known):
        raise TopologyError(
            f"half-made cluster (known nodes per node: {known}): make cluster-down first"
        )
    before: list[tuple[str, str, str]] = []

    def changed_view() -> list[Node] | None:
        nodes = settled_view(addresses, password)
        return nodes if signature(nodes) != before else None

    for _ in range(MAX_REPAIRS):
        # A repair takes effect asynchronously: wait for a new agreed layout.
        nodes = wait_until(changed_view, wait_s, "Redis Cluster to settle")
        if not layout_problems(nodes):
            return ", ".join([*done, "crossed over hosts"])
        before = signature(nodes)
        done.append(repair(nodes, password))
    raise TopologyError("layout not crossed after repairs: " + ", ".join(done))


def check_task_store(addresses: list[str], password: str) -> tuple[str, list[str]]:
    """Return the primary and its replicas; raise unless each replica's link is up."""
    roles = {}
    for address in addresses:
        c = client(address, password)
        try:
            roles[address] = c.info("replication")
        finally:
            c.close()
    primaries = [a for a, info in roles.items() if info["role"] == "master"]
    if len(primaries) != 1:
        raise TopologyError(f"task store has {len(primaries)} primaries: {primaries}")
    primary = primaries[0]
    replicas = [a for a in addresses if a != primary]
    for address in replicas:
        info = roles[address]
        following = f"{info.get('master_host')}:{info.get('master_port')}"
        if following != primary or info.get("master_link_status") != "up":
            raise TopologyError(f"replica {address} is not attached to {primary}")
    return primary, replicas


def check_sentinels(sentinels: list[str], password: str, name: str, primary: str) -> str:
    """Raise unless every Sentinel names primary and knows the other Sentinels."""
    for address in sentinels:
        c = client(address, password)
        try:
            named = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            state = c.sentinel_master(name)
        finally:
            c.close()
        if named is None or ":".join(named) != primary:
            raise TopologyError(f"Sentinel {address} names {named}, not {primary}")
        others = int(state["num-other-sentinels"])
        if others != len(sentinels) - 1:
            raise TopologyError(f"Sentinel {address} knows {others} other Sentinels")
    return f"{len(sentinels)} Sentinels name {primary}"
