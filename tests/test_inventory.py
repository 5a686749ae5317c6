"""One inventory, every host's settings: what each host of a cluster is told."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cluster import write_secrets
from inventory import (
    ROLE_PROGRAMS,
    ROOT,
    InventoryError,
    host_settings,
    kafka_cluster_id,
    load_inventory,
)
from render_conf import render_all

from fibod.config import Settings


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    """A secrets file as `cluster.py secrets` writes it."""
    path = tmp_path / "secrets.env"
    path.write_text(
        f"FIBOD_REDIS_PASSWORD={'a' * 48}\nFIBOD_REDIS_ADMIN_PASSWORD={'c' * 48}\n"
        f"FIBOD_KAFKA_PASSWORD={'e' * 48}\nFIBOD_KAFKA_ADMIN_PASSWORD={'f' * 48}\n"
        f"FIBOD_KAFKA_CLUSTER_ID={kafka_cluster_id()}\n"
    )
    return path


@pytest.fixture
def everyone(secrets: Path) -> dict[str, Settings]:
    """Every host of the rehearsal's inventory, by name."""
    inventory = load_inventory()
    return {name: host_settings(inventory, name, secrets) for name in inventory.names()}


def test_kafka_nodes_are_numbered_and_every_host_knows_the_voters(
    everyone: dict[str, Settings],
) -> None:
    kafka = [everyone[name] for name in ("kafka-a", "kafka-b", "kafka-c")]
    assert [s.kafka_node_id for s in kafka] == [1, 2, 3]
    voters = "1@10.77.0.31:9093,2@10.77.0.32:9093,3@10.77.0.33:9093"
    assert {s.kafka_controller_voters for s in everyone.values()} == {voters}
    bootstrap = "10.77.0.31:9092,10.77.0.32:9092,10.77.0.33:9092"
    assert everyone["worker-a"].kafka_bootstrap == bootstrap
    assert (kafka[0].kafka_replication_factor, kafka[0].kafka_min_insync_replicas) == (3, 2)
    assert len({s.kafka_cluster_id for s in everyone.values()}) == 1


def test_stores_are_reached_through_the_cluster_and_the_sentinels(
    everyone: dict[str, Settings],
) -> None:
    worker = everyone["worker-b"]
    assert worker.sequence_redis_cluster.split(",") == [
        f"10.77.0.{host}:{port}" for host in (41, 42, 43) for port in (6392, 6393)
    ]
    assert worker.task_redis_sentinels == "10.77.0.10:26379,10.77.0.51:26379,10.77.0.52:26379"
    assert worker.task_redis_url == "redis://10.77.0.51:6391/0"
    assert worker.task_redis_min_replicas == 1
    assert everyone["task-b"].task_redis_replica_of == "10.77.0.51:6391"
    assert everyone["task-a"].task_redis_replica_of == ""


def test_each_host_listens_on_its_address_and_runs_its_roles_only(
    everyone: dict[str, Settings],
) -> None:
    inventory = load_inventory()
    for host in inventory.hosts:
        settings = everyone[host.name]
        assert settings.listen_address == host.address
        assert settings.state_dir == str(ROOT / "var" / "cluster" / host.name)
        programs = settings.supervisor_programs.split()
        assert programs == [f"ops/supervisor/{p}" for r in host.roles for p in ROLE_PROGRAMS[r]]
        assert all((ROOT / program).is_file() for program in programs)
    assert everyone["nginx"].fetch_upstreams == "10.77.0.11:8002,10.77.0.12:8002"
    assert everyone["api-a"].base_url == "http://10.77.0.10:8080"
    assert (everyone["worker-a"].workers, everyone["worker-a"].worker_pin) == ("1", 0)
    # nginx is on another host than the fetch apps: it cannot read their text cache
    assert [everyone[name].text_cache_accel for name in ("api-a", "api-b")] == [0, 0]
    assert Settings().text_cache_accel == 1  # one machine: nginx beside the fetch app
    # a host's own settings apply to it alone
    assert everyone["seq-a"].sequence_maxmemory == "1gb"
    assert everyone["worker-a"].sequence_maxmemory == Settings().sequence_maxmemory


def test_rendering_a_host_writes_its_role_configs(secrets: Path, tmp_path: Path) -> None:
    inventory = load_inventory()
    seq = dataclasses.replace(
        host_settings(inventory, "seq-b", secrets), state_dir=str(tmp_path / "seq")
    )
    render_all(seq)
    node = (tmp_path / "seq" / "conf" / "sequence-node-1.conf").read_text()
    assert "port 6393" in node and "cluster-enabled yes" in node
    assert "bind 10.77.0.42" in (tmp_path / "seq" / "conf" / "sequence-store.conf").read_text()
    task = dataclasses.replace(
        host_settings(inventory, "task-b", secrets), state_dir=str(tmp_path / "task")
    )
    render_all(task)
    assert "replicaof 10.77.0.51 6391" in (tmp_path / "task/conf/task-store.conf").read_text()
    sentinel = (tmp_path / "task" / "conf" / "sentinel.conf").read_text()
    assert "sentinel monitor fibod-tasks 10.77.0.51 6391 2" in sentinel
    nginx = dataclasses.replace(
        host_settings(inventory, "nginx", secrets), state_dir=str(tmp_path / "nginx")
    )
    render_all(nginx)
    conf = (tmp_path / "nginx" / "conf" / "nginx.conf").read_text()
    assert "server 10.77.0.12:8002 max_fails=2 fail_timeout=5s;" in conf


def test_the_entry_host_sends_operators_to_every_monitor_and_admits_the_cluster_network(
    secrets: Path, tmp_path: Path
) -> None:
    # given: the rehearsal's inventory, where both API hosts run the monitor
    inventory = load_inventory()
    assert all("monitor" in inventory.host(name).roles for name in ("api-a", "api-b"))
    # when: the nginx host and an API host are rendered
    nginx = dataclasses.replace(
        host_settings(inventory, "nginx", secrets), state_dir=str(tmp_path / "nginx")
    )
    render_all(nginx)
    api = host_settings(inventory, "api-a", secrets)
    # then: nginx proxies /metrics, /readyz and the dashboard's JSON to both
    # monitors, for the cluster's network only; the API host runs the monitor
    conf = (tmp_path / "nginx" / "conf" / "nginx.conf").read_text()
    assert "server 10.77.0.11:8004 max_fails=2 fail_timeout=5s;" in conf
    assert "server 10.77.0.12:8004 max_fails=2 fail_timeout=5s;" in conf
    assert conf.count("allow 10.77.0.0/24; deny all;") == 3
    assert "ops/supervisor/monitor.conf" in api.supervisor_programs.split()
    assert api.monitor_allow == "10.77.0.0/24"
    # a worker host's worker serves its metrics on the shared worker port
    assert host_settings(inventory, "worker-a", secrets).worker_metrics_port == 8010
    rotate = (tmp_path / "nginx" / "conf" / "logrotate.conf").read_text()
    assert f"{tmp_path}/nginx/log/nginx-access.log" in rotate


def test_one_machine_renders_no_cluster_parts(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=str(tmp_path),
        redis_password="b" * 48,
        redis_admin_password="d" * 48,
        kafka_password="e" * 48,
        kafka_admin_password="f" * 48,
    )
    changed = render_all(settings)
    assert not any(name.startswith(("sequence-node", "sentinel")) for name in changed)
    assert "replicaof" not in (tmp_path / "conf" / "task-store.conf").read_text()


API_B = (
    '[[host]]\nname = "api-b"\naddress = "10.77.0.12"\n'
    'roles = ["submit", "fetch", "vip", "monitor"]'
)


@pytest.mark.parametrize(
    ("api_b", "reason"),
    [
        ('[[host]]\nname = "api-b"\naddress = "10.77.0.12"\nroles = ["dns"]', "unknown roles"),
        (
            '[[host]]\nname = "api-b"\naddress = "10.77.0.10"\nroles = []',
            "the same address for two hosts",
        ),
        (
            '[[host]]\nname = "nginx"\naddress = "10.77.0.12"\nroles = []',
            "the same name for two hosts",
        ),
        ('[[host]]\nname = "api-b"\naddress = "10.77.0.12"\nroles = "fetch"', "unknown roles"),
    ],
)
def test_a_broken_inventory_is_refused_with_the_reason(
    tmp_path: Path, api_b: str, reason: str
) -> None:
    text = (ROOT / "ops" / "cluster" / "inventory.toml").read_text()
    assert API_B in text
    path = tmp_path / "inventory.toml"
    path.write_text(text.replace(API_B, api_b))
    with pytest.raises(InventoryError, match=reason):
        load_inventory(path)


def test_every_role_is_needed(tmp_path: Path) -> None:
    text = (ROOT / "ops" / "cluster" / "inventory.toml").read_text()
    path = tmp_path / "inventory.toml"
    path.write_text(text.replace('roles = ["nginx", "sentinel"]', 'roles = ["sentinel"]'))
    with pytest.raises(InventoryError, match="no host has the roles nginx"):
        load_inventory(path)


def test_every_host_shares_the_secrets_a_new_secrets_file_holds(tmp_path: Path) -> None:
    # given the secrets file `cluster.py secrets` writes
    path = tmp_path / "new-secrets.env"
    write_secrets(path)
    inventory = load_inventory()
    hosts = [host_settings(inventory, name, path) for name in inventory.names()]
    # then every host has the same, non-empty Redis password and id secret, and they differ
    assert len({(s.redis_password, s.id_secret) for s in hosts}) == 1
    assert hosts[0].id_secret and hosts[0].id_secret != hosts[0].redis_password
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_secrets_file_without_an_id_secret_derives_one_every_host_shares(
    everyone: dict[str, Settings],
) -> None:
    # files written before FIBOD_ID_SECRET existed: the key follows the shared password
    secrets = {s.id_secret for s in everyone.values()}
    assert len(secrets) == 1 and secrets != {""}
    assert Settings(redis_password="b" * 48).id_secret not in secrets
