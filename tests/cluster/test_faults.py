"""Faults across hosts: the rehearsal loses a broker, a store master, a worker
host, an API host or the task store's primary, and every accepted task still
ends ready with every byte right (checked against gmpy2).

Each test narrates given / when / then, heals the rehearsal at its end
(`cluster.py up`) and records what it measured (recovery times, failures
clients saw) in var/cluster-figures.jsonl; docs/RELIABILITY.md quotes them.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from fibod import keys
from fibod.config import Settings
from fibod.redis_client import connect_sequence_store, connect_task_store
from fibod.segments import SegmentLayout
from fibod.sequences import SequenceStore
from tests.cluster.conftest import Rehearsal
from tests.cluster.faults import (
    RECOVERY_TIMEOUT_S,
    Client,
    Load,
    heal,
    kill_host,
    processes,
    read_log,
    record,
    set_link,
    wait_for,
)
from tests.reference import reference_digest

pytestmark = pytest.mark.usefixtures("healed")

#: Small tasks that load the pipeline while a fault lands (cheap to check).
SMALL_SNS = (300, 1_000, 2_500)


@pytest.fixture
def healed(rehearsal: Rehearsal) -> Iterator[None]:
    """Leave the rehearsal whole after each fault test, even one that failed."""
    yield
    heal()


@pytest.fixture
def client(rehearsal: Rehearsal) -> Client:
    """A client of the entry URL."""
    return Client(rehearsal.entry_url)


@pytest.fixture
def settings(rehearsal: Rehearsal) -> Settings:
    """The settings of a worker host (it reaches every store and broker)."""
    return rehearsal.settings(rehearsal.inventory.host("worker-a"))


@functools.cache
def _reference(sn: int) -> tuple[int, str]:
    digest = reference_digest(sn)
    return digest.size, digest.sha256


def _check_all_ready_and_right(client: Client, accepted: dict[str, int]) -> None:
    """Every accepted task ends ready, with the reference's length and bytes."""
    for task_id, sn in accepted.items():
        task = client.wait_ready(task_id)
        assert task["state"] == "ready", task
        assert task["text_bytes"] == _reference(sn)[0], (task_id, sn)
    for sn in sorted(set(accepted.values())):
        task_id = next(t for t, s in accepted.items() if s == sn)
        assert client.fetch(task_id, sn).whole_and_right, (task_id, sn)


def _longest_gap(times: list[float], after: float) -> float:
    """The longest stretch after `after` with no success, in seconds."""
    marks = [after, *sorted(t for t in times if t >= after)]
    return max((b - a for a, b in itertools.pairwise(marks)), default=0.0)


def _submitting_load(rehearsal: Rehearsal, threads: int = 2) -> Load:
    def submit(c: Client) -> tuple[int, str]:
        sn = random.choice(SMALL_SNS)
        resp = c.submit(sn)
        time.sleep(0.05)
        return resp.status_code, f"{resp.text.strip()} {sn}" if resp.status_code == 202 else ""

    return Load(lambda: Client(rehearsal.entry_url), threads, submit)


def _accepted(load: Load) -> dict[str, int]:
    out = {}
    for _, status, detail in load.results:
        if status == 202:
            task_id, sn = detail.split()
            out[task_id] = int(sn)
    return out


def test_a_kafka_broker_killed_while_tasks_are_submitted(rehearsal: Rehearsal, client) -> None:
    # given submissions flowing through the entry URL
    load = _submitting_load(rehearsal)
    load.start()
    time.sleep(3)
    # when the active KRaft controller's host dies (kill -9 of all its processes)
    controller = next(p for p in processes() if p.role == "kafka" and p.extra == "controller")
    killed_at = time.monotonic()
    kill_host(rehearsal, controller.host)
    time.sleep(12)
    load.stop()
    # then every submission accepted before, during and after it ends ready and right
    accepted = _accepted(load)
    refused = [r for r in load.results if r[1] != 202]
    after = [t for t, status, _ in load.results if status == 202 and t > killed_at]
    assert after, "no submission was accepted after the broker died"
    _check_all_ready_and_right(client, accepted)
    record(
        "test_a_kafka_broker_killed_while_tasks_are_submitted",
        killed=controller.host,
        accepted=len(accepted),
        refused=len(refused),
        refused_statuses=sorted({r[1] for r in refused}),
        longest_gap_s=round(_longest_gap(after, killed_at), 2),
    )


def _master_of(cluster: RedisCluster, key: str) -> str:
    node = cluster.get_node_from_key(key)
    return f"{node.host}:{node.port}"


def test_a_sequence_store_master_killed_during_a_fetch(
    rehearsal: Rehearsal, client, settings
) -> None:
    # given a ready task of ~380 MB of text whose fetch is in flight (read slowly)
    sn = 60_000
    task_id = client.submit(sn).text
    assert client.wait_ready(task_id)["state"] == "ready"
    store = connect_sequence_store(settings)
    assert isinstance(store, RedisCluster)
    layout = SegmentLayout(settings.segment_bytes)
    probe = keys.segment_key(layout.segment_bytes, 5)
    victim = _master_of(store, probe)
    victim_pid = _redis_pid(victim)
    in_flight: dict[str, object] = {}
    reader = threading.Thread(
        target=lambda: in_flight.update(result=client.fetch(task_id, sn, pause_s=0.02))
    )
    reader.start()
    time.sleep(1.0)
    # when that master is killed (kill -9)
    killed_at = time.monotonic()
    os.kill(victim_pid, signal.SIGKILL)
    # then its replica takes over: writes to its slots succeed again
    # a key of fibod's (the apps' Redis user has fibod:* only) in the probe's slot
    tag = "fibod:failover-probe:" + probe[probe.index("{") :]
    failover_s = wait_for(lambda: store.set(tag, b"x"), RECOVERY_TIMEOUT_S, "slots writable")
    reader.join(timeout=RECOVERY_TIMEOUT_S)
    flight = in_flight["result"]
    # and the fetch in flight was whole or cut short (Content-Length shows it), never wrong
    assert flight.right_so_far, flight
    # and a new fetch, and a task computed cold right now, are whole and right
    assert client.fetch(task_id, sn).whole_and_right
    cold_sn = 45_000 + random.randrange(1, 999)
    cold_id = client.submit(cold_sn).text
    assert client.wait_ready(cold_id)["text_bytes"] == _reference(cold_sn)[0]
    assert client.fetch(cold_id, cold_sn).whole_and_right
    record(
        "test_a_sequence_store_master_killed_during_a_fetch",
        killed=victim,
        failover_s=round(failover_s, 2),
        in_flight_fetch="whole" if flight.whole_and_right else "cut short",
        since_kill_s=round(time.monotonic() - killed_at, 1),
    )


def _redis_pid(address: str) -> int:
    """Return the pid of the sequence-store server at host:port.

    Redis keeps its listen address in its process title (proc-title-template).
    """
    for p in processes():
        if p.role == "sequence-redis":
            title = Path(f"/proc/{p.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            if f" {address} " in f" {title} ":
                return p.pid
    raise AssertionError(f"no sequence-store process serves {address}")


def _owner_host(rehearsal: Rehearsal, owner: str) -> str:
    """Map a task's owner id (host:pid) to the rehearsal host its worker runs on."""
    pid = int(owner.rsplit(":", 1)[1])
    return next(p.host for p in processes() if p.role == "worker" and p.pid == pid)


def _hold_ghost_claim(settings: Settings, sn: int, hold_ms: int) -> None:
    """Claim the last segment of sn for a worker that does not exist."""
    store = connect_sequence_store(settings)
    layout = SegmentLayout(settings.segment_bytes)
    last = layout.covering(sn)[-1]
    store.set(keys.claim_key(layout.segment_bytes, last), "ghost", px=hold_ms)


def _owner(settings: Settings, task_id: str) -> str:
    """Return the task's owner (the worker that last started it), '' if none yet."""
    owner = connect_task_store(settings).hget(keys.task_key(task_id), "owner")
    return str(owner or "")


@pytest.mark.parametrize("fault", ["killed", "cut off"])
def test_a_worker_host_lost_in_the_middle_of_a_task(
    rehearsal: Rehearsal, client, settings, fault: str
) -> None:
    # given a task computed cold, whose owner waits on a claim nobody releases
    # before its lease ends
    sn = 40_000 + random.randrange(1, 999)
    SequenceStore.from_settings(settings).clear()
    _hold_ghost_claim(settings, sn, hold_ms=settings.claim_lease_ms)
    task_id = client.submit(sn).text
    wait_for(lambda: _owner(settings, task_id), 60, "the task has an owner")
    owner = _owner(settings, task_id)
    lost = _owner_host(rehearsal, owner)
    lost_at = time.monotonic()
    # when the owner's host is killed whole, or cut off for longer than a claim's lease
    if fault == "killed":
        kill_host(rehearsal, lost)
    else:
        set_link(lost, up=False)
    task = client.wait_ready(task_id)
    ready_s = time.monotonic() - lost_at
    if fault == "cut off":
        time.sleep(max(0.0, settings.claim_lease_ms / 1000 + 2 - ready_s))
        set_link(lost, up=True)
        time.sleep(8)  # the cut-off worker wakes up, finds its unit gone, writes late
    # then another host finished it, and nothing the lost worker did afterwards won
    final = client.task(task_id)
    assert final["state"] == "ready"
    assert final["text_bytes"] == task["text_bytes"] == _reference(sn)[0]
    new_owner = _owner(settings, task_id)
    assert new_owner and new_owner != owner
    assert client.fetch(task_id, sn).whole_and_right
    if fault == "cut off":
        state = Path(rehearsal.settings(rehearsal.inventory.host(lost)).state_dir)
        log = read_log(state / "log" / "worker-0.log")
        # it noticed it lost the task: it gave its unit up (revoked, or the
        # stores unreachable: the unit is read again later), or finished it and
        # was refused the state change
        reactions = ("abandoned", "retrying in", "no longer ours to mark ready")
        assert any(reaction in log for reaction in reactions), log[-2000:]
    record(
        f"test_a_worker_host_lost_in_the_middle_of_a_task[{fault}]",
        lost=lost,
        ready_after_s=round(ready_s, 2),
    )


def test_an_api_host_killed_while_clients_submit_and_fetch(rehearsal: Rehearsal, client) -> None:
    # given a ready task, and clients fetching it and submitting new ones
    sn = 5_000
    ready_id = client.submit(sn).text
    client.wait_ready(ready_id)

    def fetch(c: Client) -> tuple[int, str]:
        got = c.fetch(ready_id, sn)
        return (200 if got.whole_and_right else 0), ""

    fetches = Load(lambda: Client(rehearsal.entry_url), 2, fetch)
    submits = _submitting_load(rehearsal, threads=1)
    fetches.start()
    submits.start()
    time.sleep(3)
    # when one API host dies (kill -9 of its submit, fetch and VIP apps)
    kill_host(rehearsal, "api-a")
    killed_at = time.monotonic()  # every process of the host is gone
    time.sleep(10)
    fetches.stop()
    submits.stop()
    # then no fetch of the ready task that started after the kill failed (nginx
    # sends it to the other API host); one in flight on the dead host may be
    # cut short (Content-Length tells: nginx cannot retry a stream it began)
    runs = list(zip(fetches.started, fetches.results, strict=True))
    after = [r for started, r in runs if started > killed_at]
    cut_in_flight = [r for started, r in runs if started <= killed_at < r[0] and r[1] != 200]
    failed_after = [r for r in after if r[1] != 200]
    assert not failed_after, failed_after[:5]
    assert len(after) > 10
    assert len(cut_in_flight) <= 2  # one per fetching client at most
    accepted = _accepted(submits)
    _check_all_ready_and_right(client, accepted)
    record(
        "test_an_api_host_killed_while_clients_submit_and_fetch",
        fetches=len(fetches.results),
        failed_fetches_after_kill=len(failed_after),
        cut_in_flight=len(cut_in_flight),
        submits=len(submits.results),
        failed_submits=len([r for r in submits.results if r[1] != 202]),
    )


def test_the_task_store_primary_killed_right_after_a_burst_of_accepted_tasks(
    rehearsal: Rehearsal, client, settings
) -> None:
    # given a burst of submissions, each answered 202 (written on the replica too: WAIT)
    accepted = {}
    for _ in range(150):
        sn = random.choice(SMALL_SNS)
        resp = client.submit(sn)
        assert resp.status_code == 202, resp.text
        accepted[resp.text] = sn
    primary = next(p for p in processes() if p.role == "task-redis" and p.extra == "master")
    # when the primary's host dies the next moment
    killed_at = time.monotonic()
    kill_host(rehearsal, primary.host)
    # then the Sentinels promote a replica, the other follows it, and submissions
    # are accepted again (each one on a replica too)
    failover_s = wait_for(
        lambda: client.submit(SMALL_SNS[0], timeout_s=10).status_code == 202,
        RECOVERY_TIMEOUT_S,
        "submissions accepted after the failover",
        step_s=0.2,
    )
    # and no accepted task was lost: every one is there and ends ready and right
    promoted = connect_task_store(settings)
    missing = [t for t in accepted if not promoted.exists(keys.task_key(t))]
    assert not missing, f"{len(missing)} accepted tasks lost, e.g. {missing[:3]}"
    _check_all_ready_and_right(client, accepted)
    record(
        "test_the_task_store_primary_killed_right_after_a_burst_of_accepted_tasks",
        killed=primary.host,
        accepted=len(accepted),
        lost=len(missing),
        submissions_again_after_s=round(failover_s, 2),
        since_kill_s=round(time.monotonic() - killed_at, 1),
    )
