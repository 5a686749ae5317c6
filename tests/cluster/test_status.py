"""`make cluster-status`: one line per process, HOST ROLE ADDRESS PID STATE."""

from __future__ import annotations

import re
from collections import Counter

from tests.cluster.conftest import Rehearsal, cluster

LINE = re.compile(
    r"(?P<host>[a-z0-9-]+) (?P<role>[a-z-]+) (?P<address>[0-9.]+) (?P<pid>[0-9]+) "
    r"(?P<state>RUNNING)(?: (?P<extra>master|replica|controller))?"
)
REDIS_ROLES = ("task-redis", "sequence-redis")


def expected_processes(rehearsal: Rehearsal) -> Counter[tuple[str, str]]:
    """Return (host, role) -> how many processes the inventory asks for."""
    expected: Counter[tuple[str, str]] = Counter()
    for host in rehearsal.inventory.hosts:
        settings = rehearsal.settings(host)
        for role in host.roles:
            count = {"worker": int(settings.workers)}.get(role, 1)
            if role == "sequence-redis":
                count = settings.sequence_redis_nodes
            expected[(host.name, role)] = count
    return expected


def test_status_has_one_well_formed_line_per_process(rehearsal: Rehearsal) -> None:
    # when
    result = cluster("status", 60)
    # then it says all runs, in lines a test can parse
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), [line for line, m in zip(lines, matches, strict=True) if not m]
    rows = [m.groupdict() for m in matches if m]
    assert Counter((r["host"], r["role"]) for r in rows) == expected_processes(rehearsal)
    addresses = {h.name: h.address for h in rehearsal.inventory.hosts}
    assert all(r["address"] == addresses[r["host"]] for r in rows)
    assert len({r["pid"] for r in rows}) == len(rows)
    # and every Redis server says master or replica: 3 + 3 and 1 + 2
    redis_rows = [r for r in rows if r["role"] in REDIS_ROLES]
    assert all(r["extra"] in ("master", "replica") for r in redis_rows)
    assert Counter((r["role"], r["extra"]) for r in redis_rows) == {
        ("sequence-redis", "master"): 3,
        ("sequence-redis", "replica"): 3,
        ("task-redis", "master"): 1,
        ("task-redis", "replica"): 2,
    }
    assert [r["extra"] for r in rows if r["role"] == "kafka"].count("controller") == 1
