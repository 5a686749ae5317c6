"""Hosts, addresses and roles of a fibod cluster, and each host's settings.

One TOML file (ops/cluster/inventory.toml for the rehearsal) names every
host, its address, its roles and its own setting overrides, plus settings
every host shares. `host_settings` turns it into one host's `Settings`:
the cross-host values (Kafka voters and bootstrap list, Redis Cluster
start-up nodes, Sentinels, the task store's primary, nginx upstreams) are
computed here from the roles, so no address is typed twice. The same
function serves the rehearsal (every host on this machine) and an
operator rendering one real machine at a time.
"""

from __future__ import annotations

import base64
import ipaddress
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from render_conf import effective_settings

from fibod.config import Settings, SettingsError, load

ROOT = Path(__file__).resolve().parent.parent
#: The rehearsal's inventory, and the default of `scripts/cluster.py`.
DEFAULT_INVENTORY = ROOT / "ops" / "cluster" / "inventory.toml"
#: Where every host's state dir lives (var/cluster/<host>/).
CLUSTER_VAR = ROOT / "var" / "cluster"

#: Role -> the program files of ops/supervisor/ that run it.
ROLE_PROGRAMS = {
    "nginx": ("nginx.conf",),
    "submit": ("submit.conf",),
    "fetch": ("fetch.conf",),
    "vip": ("vip.conf",),
    "monitor": ("monitor.conf",),
    "worker": ("worker.conf",),
    "kafka": ("kafka.conf",),
    "task-redis": ("task-redis.conf",),
    "sequence-redis": ("cluster/sequence-node.conf",),
    "sentinel": ("cluster/sentinel.conf",),
}
#: Supervisor program (group) name -> role, for status lines.
PROGRAM_ROLES = {
    "nginx": "nginx",
    "submit": "submit",
    "fetch": "fetch",
    "vip": "vip",
    "monitor": "monitor",
    "worker": "worker",
    "kafka": "kafka",
    "task-redis": "task-redis",
    "sequence-node": "sequence-redis",
    "sentinel": "sentinel",
}
#: Roles whose programs wait (autostart=false) until the stores and the topic are ready.
APP_ROLES = ("worker", "submit", "fetch", "vip", "monitor")
#: Roles a working cluster needs at least once.
REQUIRED_ROLES = tuple(ROLE_PROGRAMS)
#: Longest host name: the rehearsal's host-side veth is "vf-<host>" (15 bytes at most).
MAX_HOST_NAME = 12
#: The most replicas a Kafka partition gets, and so the quorum of a bigger cluster.
KAFKA_MAX_REPLICAS = 3


class InventoryError(ValueError):
    """The inventory is malformed or describes an impossible cluster."""


@dataclass(frozen=True)
class Host:
    """One machine (a namespace in the rehearsal) and what runs on it."""

    name: str
    address: str
    roles: tuple[str, ...]
    #: FIBOD_* values of this host only; they win over everything else.
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Inventory:
    """Every host, the settings they share, and the rehearsal's network."""

    hosts: tuple[Host, ...]
    shared: Mapping[str, str]
    #: The rehearsal's bridge and its network (the root namespace takes the first address).
    bridge: str
    network: ipaddress.IPv4Network
    namespace_prefix: str

    def host(self, name: str) -> Host:
        """Return the host called name."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise InventoryError(f"no host {name!r} in the inventory ({', '.join(self.names())})")

    def names(self) -> list[str]:
        """Return every host name, in inventory order."""
        return [host.name for host in self.hosts]

    def with_role(self, role: str) -> list[Host]:
        """Return the hosts that have role, in inventory order."""
        return [host for host in self.hosts if role in host.roles]

    def namespace(self, host: Host) -> str:
        """Return the rehearsal's network namespace of host."""
        return self.namespace_prefix + host.name

    def gateway(self) -> str:
        """Return the root namespace's address on the bridge."""
        return str(next(self.network.hosts()))


def _text_values(table: object, where: str) -> dict[str, str]:
    """Check a table of FIBOD_* settings and return it as text values."""
    if not isinstance(table, dict):
        raise InventoryError(f"{where}: expected a table of FIBOD_* settings")
    values = {}
    for key, value in table.items():
        if not key.startswith("FIBOD_") or isinstance(value, bool | dict | list):
            raise InventoryError(f"{where}: {key} = {value!r} is not a FIBOD_* setting")
        values[key] = str(value)
    return values


def load_inventory(path: Path = DEFAULT_INVENTORY) -> Inventory:
    """Read and check an inventory file; raise InventoryError with the reason."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InventoryError(f"{path}: {exc}") from None
    net = data.get("network", {})
    try:
        network = ipaddress.IPv4Network(net.get("subnet", "10.77.0.0/24"))
    except ValueError as exc:
        raise InventoryError(f"{path}: [network] subnet: {exc}") from None
    hosts = []
    for number, entry in enumerate(data.get("host", []), 1):
        where = f"{path}: host #{number}"
        try:
            name, address, roles = entry["name"], entry["address"], tuple(entry["roles"])
        except (KeyError, TypeError):
            raise InventoryError(f"{where}: needs name, address and roles") from None
        if not name.replace("-", "").isalnum() or not 0 < len(name) <= MAX_HOST_NAME:
            raise InventoryError(f"{where}: name {name!r}: letters, digits, '-', 1-12 long")
        unknown = sorted(set(roles) - set(ROLE_PROGRAMS))
        if unknown:
            raise InventoryError(f"{where} ({name}): unknown roles {unknown}")
        try:
            ipaddress.IPv4Address(address)
        except ValueError as exc:
            raise InventoryError(f"{where} ({name}): {exc}") from None
        overrides = _text_values(entry.get("settings", {}), f"{where} ({name}) settings")
        hosts.append(Host(name, address, roles, overrides))
    inventory = Inventory(
        hosts=tuple(hosts),
        shared=_text_values(data.get("settings", {}), f"{path}: [settings]"),
        bridge=net.get("bridge", "br-fibod"),
        network=network,
        namespace_prefix=net.get("namespace_prefix", "fibod-"),
    )
    _check_cluster(inventory, path)
    return inventory


def _check_cluster(inventory: Inventory, path: Path) -> None:
    """Refuse duplicates and a set of roles that cannot work."""
    for what in ("name", "address"):
        seen = [getattr(host, what) for host in inventory.hosts]
        repeated = sorted({value for value in seen if seen.count(value) > 1})
        if repeated:
            raise InventoryError(f"{path}: the same {what} for two hosts: {', '.join(repeated)}")
    missing = [role for role in REQUIRED_ROLES if not inventory.with_role(role)]
    if missing:
        raise InventoryError(f"{path}: no host has the roles {', '.join(missing)}")


def kafka_cluster_id() -> str:
    """Return a new KRaft cluster id, as `kafka-storage random-uuid` makes them."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own ids never start with '-'
            return text


def state_dir(host: Host) -> Path:
    """Return the host's state dir: var/cluster/<host> of this checkout."""
    return CLUSTER_VAR / host.name


def cluster_values(inventory: Inventory, host: Host, base: Settings) -> dict[str, str]:
    """Return the FIBOD_* values host gets from the roles of every host.

    base holds the shared settings (ports, counts), the same on every host.
    """
    kafka = inventory.with_role("kafka")
    sequence = inventory.with_role("sequence-redis")
    task = inventory.with_role("task-redis")
    sentinels = inventory.with_role("sentinel")
    primary = task[0]  # the first task-redis host starts as primary, the others follow it
    replicas = min(len(kafka), KAFKA_MAX_REPLICAS)
    nginx = inventory.with_role("nginx")[0]

    def joined(hosts: list[Host], port: int) -> str:
        return ",".join(f"{h.address}:{port}" for h in hosts)

    nodes = [
        f"{h.address}:{base.sequence_redis_port + i}"
        for h in sequence
        for i in range(base.sequence_redis_nodes)
    ]
    values = {
        "FIBOD_LISTEN_ADDRESS": host.address,
        "FIBOD_STATE_DIR": str(state_dir(host)),
        "FIBOD_SUPERVISOR_PROGRAMS": " ".join(
            f"ops/supervisor/{program}" for role in host.roles for program in ROLE_PROGRAMS[role]
        ),
        "FIBOD_BASE_URL": f"http://{nginx.address}:{base.http_port}",
        "FIBOD_KAFKA_BOOTSTRAP": joined(kafka, base.kafka_port),
        "FIBOD_KAFKA_CONTROLLER_VOTERS": ",".join(
            f"{number}@{h.address}:{base.kafka_controller_port}"
            for number, h in enumerate(kafka, 1)
        ),
        "FIBOD_KAFKA_REPLICATION_FACTOR": str(replicas),
        "FIBOD_KAFKA_MIN_INSYNC_REPLICAS": str(max(1, replicas - 1)),
        "FIBOD_SEQUENCE_REDIS_CLUSTER": ",".join(nodes),
        "FIBOD_SEQUENCE_REDIS_URL": f"redis://{nodes[0]}/0",
        "FIBOD_TASK_REDIS_URL": f"redis://{primary.address}:{base.task_redis_port}/0",
        "FIBOD_TASK_REDIS_SENTINELS": joined(sentinels, base.sentinel_port),
        "FIBOD_TASK_REDIS_MIN_REPLICAS": str(min(len(task) - 1, 1)),
        "FIBOD_SUBMIT_UPSTREAMS": joined(inventory.with_role("submit"), base.submit_port),
        "FIBOD_FETCH_UPSTREAMS": joined(inventory.with_role("fetch"), base.fetch_port),
        "FIBOD_VIP_UPSTREAMS": joined(inventory.with_role("vip"), base.vip_port),
        "FIBOD_MONITOR_UPSTREAMS": joined(inventory.with_role("monitor"), base.monitor_port),
        # the text cache is sent by nginx from the fetch host's folder: only where both run
        "FIBOD_TEXT_CACHE_ACCEL": "1" if {"nginx", "fetch"} <= set(host.roles) else "0",
    }
    if host in kafka:
        values["FIBOD_KAFKA_NODE_ID"] = str(kafka.index(host) + 1)
    if host in task and host != primary:
        values["FIBOD_TASK_REDIS_REPLICA_OF"] = f"{primary.address}:{base.task_redis_port}"
    return values


def host_settings(inventory: Inventory, name: str, secrets_file: Path) -> Settings:
    """Return the effective settings of one host.

    Later ones win: the model's defaults, the secrets file (shared by
    every host), the inventory's shared [settings], the values computed
    from the roles, the host's own settings. The environment is not read:
    a host's settings are what the inventory says, wherever it is rendered.
    """
    host = inventory.host(name)
    try:
        base = load(dict(inventory.shared), secrets_file)
        values = dict(inventory.shared) | cluster_values(inventory, host, base)
        return effective_settings(values | dict(host.overrides), secrets_file)
    except SettingsError as exc:
        raise InventoryError(f"host {name}: {exc}") from None
