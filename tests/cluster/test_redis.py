"""The stores across hosts: a crossed Redis Cluster, a replicated task store."""

from __future__ import annotations

import os
import subprocess

import redis
from inventory import Host

from fibod.config import REDIS_ADMIN_USER
from tests.cluster.conftest import Rehearsal


def redis_cli(rehearsal: Rehearsal, *args: str) -> subprocess.CompletedProcess[str]:
    """Run redis-cli from the root namespace as the admin user."""
    return subprocess.run(
        ["redis-cli", "--user", REDIS_ADMIN_USER, *args],
        env=os.environ | {"REDISCLI_AUTH": rehearsal.password},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def sequence_nodes(rehearsal: Rehearsal) -> list[tuple[Host, str]]:
    """Every node of the sequence store's cluster, with its host."""
    nodes = []
    for host in rehearsal.inventory.with_role("sequence-redis"):
        settings = rehearsal.settings(host)
        for i in range(settings.sequence_redis_nodes):
            nodes.append((host, f"{host.address}:{settings.sequence_redis_port + i}"))
    return nodes


def test_redis_cli_finds_the_cluster_whole(rehearsal: Rehearsal) -> None:
    first = sequence_nodes(rehearsal)[0][1]
    result = redis_cli(rehearsal, "--cluster", "check", first)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[OK] All 16384 slots covered." in result.stdout
    assert "keys in 3 masters." in result.stdout


def test_every_master_has_its_replica_on_another_host(rehearsal: Rehearsal) -> None:
    # given CLUSTER NODES as one node sees it
    first = sequence_nodes(rehearsal)[0][1]
    host, port = first.split(":")
    text = redis_cli(rehearsal, "-h", host, "-p", port, "cluster", "nodes").stdout
    rows = [line.split() for line in text.splitlines()]
    where = {row[0]: row[1].split(":")[0] for row in rows}
    masters = [row for row in rows if "master" in row[2].split(",")]
    replicas = [row for row in rows if "slave" in row[2].split(",")]
    # then 3 masters on 3 hosts, each followed by one replica elsewhere
    assert len(masters) == 3 and len(replicas) == 3
    assert len({where[m[0]] for m in masters}) == 3
    for master in masters:
        followers = [r for r in replicas if r[3] == master[0]]
        assert len(followers) == 1, master
        assert where[followers[0][0]] != where[master[0]]


def test_the_task_replicas_are_attached_and_the_sentinels_name_the_primary(
    rehearsal: Rehearsal,
) -> None:
    # one task-store server is the primary (which one may have changed with a
    # failover), every other one follows it, and every Sentinel names it
    hosts = rehearsal.inventory.with_role("task-redis")
    port = rehearsal.settings(hosts[0]).task_redis_port
    servers = {
        h.address: redis.Redis(
            h.address, port, username=REDIS_ADMIN_USER, password=rehearsal.password
        )
        for h in hosts
    }
    roles = {address: r.info("replication") for address, r in servers.items()}
    primaries = [a for a, info in roles.items() if info["role"] == "master"]
    assert len(primaries) == 1, roles
    primary = primaries[0]
    info = roles[primary]
    assert info["connected_slaves"] == len(hosts) - 1
    followers = {info[f"slave{i}"]["ip"] for i in range(len(hosts) - 1)}
    assert followers == set(servers) - {primary}
    assert all(info[f"slave{i}"]["state"] == "online" for i in range(len(hosts) - 1))
    for address in set(servers) - {primary}:
        assert roles[address]["master_link_status"] == "up", address
    for host in rehearsal.inventory.with_role("sentinel"):
        settings = rehearsal.settings(host)
        result = redis_cli(
            rehearsal, "-h", host.address, "-p", str(settings.sentinel_port),
            "sentinel", "get-master-addr-by-name", settings.task_redis_master_name,
        )  # fmt: skip
        assert result.stdout.split() == [primary, str(port)], host.name
