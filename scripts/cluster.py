"""Render a fibod cluster host by host, and run the multi-host rehearsal.

The inventory (ops/cluster/inventory.toml) names the hosts and their
roles; scripts/inventory.py turns it into each host's settings, and
scripts/render_conf.py renders them into var/cluster/<host>/. The
rehearsal puts each host in a network namespace on one bridge of this
machine and runs one supervisord per namespace with `supervisord.conf`
as it is, its environment holding that host's effective settings.

Usage:
  cluster.py secrets --out FILE        new shared secrets (once per cluster)
  cluster.py render --host NAME        render one host (real machines too)
  cluster.py converge                  make the Redis Cluster and the topic once, check
                                       replicas and Sentinels (every host rendered here)
  cluster.py start-apps --host NAME    wait for the topic, start that host's apps
  cluster.py up | status | down        the rehearsal (root; make cluster-up ...)
Each takes --inventory FILE (default ops/cluster/inventory.toml); render
takes --secrets FILE (default var/cluster/secrets.env; up writes a new one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netns
import redis_topology
from inventory import (
    APP_ROLES,
    CLUSTER_VAR,
    DEFAULT_INVENTORY,
    PROGRAM_ROLES,
    ROOT,
    Host,
    Inventory,
    InventoryError,
    host_settings,
    kafka_cluster_id,
    load_inventory,
    state_dir,
)
from render_conf import ConfigError, new_secrets, render_all, with_run_user, write_private
from run_user import RunUser
from supervisor.xmlrpc import SupervisorTransport

from fibod.config import Settings, SettingsError, load, withheld_from_apps
from fibod.envfile import read_env_file

#: The rehearsal's shared secrets: the Redis password, VIP keys, Kafka's cluster id.
SECRETS_FILE = CLUSTER_VAR / "secrets.env"
SUPERVISORD = ROOT / ".venv" / "bin" / "supervisord"
SV_CONF = ROOT / "supervisord.conf"
#: Debian keeps nginx in sbin, which a non-login PATH may lack.
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
#: Lines of a log shown when a part fails.
LOG_TAIL_LINES = 30
#: Seconds between two looks at supervisor while waiting.
POLL_S = 0.5


class ClusterError(RuntimeError):
    """A part of the cluster failed; carries the logs to show."""

    def __init__(self, part: str, message: str, logs: list[Path] | None = None) -> None:
        super().__init__(f"{part}: {message}")
        self.logs = logs or []


#: When this command started: each progress line tells the seconds since.
STARTED = time.monotonic()


def log(message: str) -> None:
    """Print one progress line, with the seconds since the command started."""
    print(f"cluster: {time.monotonic() - STARTED:5.1f} s  {message}", flush=True)


def show_logs(paths: list[Path]) -> None:
    """Print the last lines of each non-empty log on stderr."""
    for path in paths:
        if path.is_file() and path.stat().st_size:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            print(f"--- last lines of {path.relative_to(ROOT)} ---", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)


# --- Hosts and their supervisord ------------------------------------------------


def settings_of(host: Host) -> Settings:
    """Return the settings a host was rendered with (its conf/fibod.env)."""
    return load({}, state_dir(host) / "conf" / "fibod.env")


def host_environment(host: Host, admin: bool = True) -> dict[str, str]:
    """Return the host's effective settings as an environment.

    Without `admin` (supervisord's, which every app inherits) the admin
    secrets are left out.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FIBOD_", "SUPERVISOR_"))
    }
    env |= read_env_file(state_dir(host) / "conf" / "fibod.env")
    if not admin:
        for name in withheld_from_apps():
            env.pop(name, None)
    env["PATH"] = f"{env.get('PATH', '/usr/bin:/bin')}:{SBIN_PATH}"
    return env


def supervisor(host: Host) -> Any:
    """Return an XML-RPC proxy to the host's supervisord (through its unix socket)."""
    socket = state_dir(host) / "run" / "supervisor.sock"
    transport = SupervisorTransport(None, None, f"unix://{socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def alive(pid: int) -> bool:
    """True if pid runs and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def supervisord_pid(host: Host) -> int | None:
    """Return the pid of the host's supervisord if it runs."""
    try:
        pid = int((state_dir(host) / "run" / "supervisord.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def processes(host: Host) -> list[dict[str, Any]]:
    """Return supervisor's process info of the host ([] if it does not answer)."""
    try:
        return list(supervisor(host).getAllProcessInfo())
    except (OSError, xmlrpc.client.Error):
        return []


def process_log(host: Host, info: dict[str, Any]) -> list[Path]:
    """Return the logs that tell why a program failed."""
    logs = state_dir(host) / "log"
    return [
        Path(info["stdout_logfile"]),
        logs / "supervisord.log",
        *sorted(logs.glob(f"{info['group']}*.log")),
    ]


def start_supervisord(inventory: Inventory, host: Host) -> None:
    """Start the host's supervisord inside its namespace."""
    out = state_dir(host) / "log" / "supervisord.start.log"
    argv = netns.exec_argv(inventory.namespace(host), [str(SUPERVISORD), "-c", str(SV_CONF)])
    with out.open("w") as sink:
        result = subprocess.run(
            argv, env=host_environment(host, admin=False), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT, timeout=60, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise ClusterError(f"{host.name} supervisord", "did not start", [out])


def start_apps(hosts: list[Host], wait_s: float) -> None:
    """Start the app programs of hosts; wait until supervisor has them RUNNING."""
    pending = {}
    deadline = time.monotonic() + wait_s
    for host in hosts:
        # At boot supervisord may still be opening its socket.
        while not (infos := processes(host)):
            if time.monotonic() > deadline:
                raise ClusterError(f"{host.name} supervisord", "does not answer on its socket")
            time.sleep(POLL_S)
        for info in infos:
            if PROGRAM_ROLES.get(info["group"]) in APP_ROLES:
                name = f"{info['group']}:{info['name']}"
                with contextlib.suppress(xmlrpc.client.Fault):  # already started
                    supervisor(host).startProcess(name, False)
                pending[(host.name, name)] = host
    while pending:
        for (host_name, name), host in list(pending.items()):
            info = supervisor(host).getProcessInfo(name)
            if info["statename"] == "RUNNING":
                del pending[(host_name, name)]
            elif info["statename"] in ("FATAL", "EXITED") or time.monotonic() > deadline:
                raise ClusterError(
                    f"{host_name} {name}", f"is {info['statename']}", process_log(host, info)
                )
        time.sleep(POLL_S)


def run_with_settings(host: Host, argv: list[str], part: str, logs: list[Path]) -> str:
    """Run a script of this checkout with the host's settings file; fail loudly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIBOD_")}
    env["FIBOD_ENV_FILE"] = str(state_dir(host) / "conf" / "fibod.env")
    result = subprocess.run(
        [sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise ClusterError(part, (result.stdout + result.stderr).strip(), logs)
    return result.stdout.strip()


# --- The rehearsal ---------------------------------------------------------------


def rehearsal_pids(inventory: Inventory) -> list[int]:
    """Return every process the rehearsal runs: in its namespaces, or marked as its own.

    supervisord puts its socket's URL in each child's environment; a child
    outside the namespaces (they were deleted under it) is found by that.
    """
    found = {pid for ns in netns.namespaces(inventory.namespace_prefix) for pid in netns.pids(ns)}
    marker = f"SUPERVISOR_SERVER_URL=unix://{CLUSTER_VAR}/".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if any(v.startswith(marker) for v in environ.read_bytes().split(b"\0")):
                found.add(int(environ.parent.name))
    return sorted(pid for pid in found if pid != os.getpid() and alive(pid))


def rehearsal_state(inventory: Inventory) -> str:
    """Return running (its network there), absent (nothing there) or partial.

    A running rehearsal may have hosts killed or cut off (fault tests do
    that); `up` heals them rather than starting over.
    """
    spaces = set(netns.namespaces(inventory.namespace_prefix))
    bridge = inventory.bridge in netns.links()
    every_namespace = spaces == {inventory.namespace(h) for h in inventory.hosts}
    if bridge and every_namespace:
        return "running"
    if not spaces and not bridge and not rehearsal_pids(inventory):
        return "absent"
    return "partial"


def write_secrets(path: Path) -> None:
    """Write new shared secrets: Redis password, VIP keys, id secret, Kafka's cluster id."""
    lines = [
        "# Secrets every host of the fibod cluster shares (scripts/cluster.py secrets):",
        "# copy this file to each host, mode 600, and render with --secrets FILE.",
        "",
        *new_secrets(),
        "# KRaft cluster id every Kafka node is formatted with.",
        f"FIBOD_KAFKA_CLUSTER_ID={kafka_cluster_id()}",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, "\n".join(lines))


def render_host(inventory: Inventory, name: str, secrets: Path) -> list[str]:
    """Render one host's configs and effective settings; return the changed files."""
    if not secrets.is_file():
        raise ClusterError(
            "secrets", f"{secrets} is missing: make it once with `cluster.py secrets --out FILE`"
        )
    try:
        settings, resolution = with_run_user(host_settings(inventory, name, secrets))
        if resolution.fallback_reason:
            log(f"{name}: {resolution.warning()}")
        return render_all(settings, resolution.fallback_reason)
    except (InventoryError, SettingsError, ConfigError) as exc:
        raise ClusterError(f"{name} render", str(exc)) from None


def cold_start(inventory: Inventory) -> None:
    """Render every host from clean state, make the network, start each supervisord."""
    shutil.rmtree(CLUSTER_VAR, ignore_errors=True)
    write_secrets(SECRETS_FILE)
    for host in inventory.hosts:
        render_host(inventory, host.name, SECRETS_FILE)
    log(f"rendered {len(inventory.hosts)} hosts into {CLUSTER_VAR.relative_to(ROOT)}/")
    prefix_len = inventory.network.prefixlen
    netns.create_bridge(inventory.bridge, inventory.gateway(), prefix_len)
    for host in inventory.hosts:
        netns.add_namespace(
            inventory.bridge, inventory.namespace(host), netns.veth(host.name),
            host.address, prefix_len,
        )  # fmt: skip
    log(f"network {inventory.network} on {inventory.bridge}: {len(inventory.hosts)} namespaces")
    for host in inventory.with_role("nginx"):
        state = state_dir(host)
        conf = f"{state}/conf/nginx.conf"
        # as the user it runs as: as root, nginx -t gives its temp folders to `nobody`
        error_log = f"{state}/log/nginx-error.log"
        user = RunUser.named(settings_of(host).run_user)
        run_as = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--init-groups", "--"]
        nginx_test = [*run_as, "nginx", "-q", "-t", "-p", f"{state}/nginx/", "-c", conf]
        result = subprocess.run(
            netns.exec_argv(inventory.namespace(host), [*nginx_test, "-e", error_log]),
            capture_output=True, text=True, env=host_environment(host), check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(f"{host.name} nginx", f"config refused: {result.stderr.strip()}")
    for host in inventory.hosts:
        start_supervisord(inventory, host)
    log(f"started {len(inventory.hosts)} supervisords")


def heal(inventory: Inventory) -> None:
    """Reconnect hosts cut off, start the supervisord of hosts killed whole."""
    for host in inventory.hosts:
        link = netns.veth(host.name)
        if not netns.link_is_up(link):
            log(f"{host.name}: reconnecting ({link} was down)")
            netns.set_link(link, up=True)
        if supervisord_pid(host) is None:
            log(f"{host.name}: starting its supervisord again (the host was killed)")
            start_supervisord(inventory, host)


def revive(inventory: Inventory) -> None:
    """Start the stores, brokers and nginx that stopped (a second `up`)."""
    for host in inventory.hosts:
        for info in processes(host):
            role = PROGRAM_ROLES.get(info["group"])
            if role not in APP_ROLES and info["statename"] not in ("RUNNING", "STARTING"):
                log(f"{host.name}: starting {info['group']}:{info['name']} ({info['statename']})")
                supervisor(host).startProcess(f"{info['group']}:{info['name']}", False)


def redis_addresses(inventory: Inventory, role: str) -> list[str]:
    """Return host:port of every Redis server (or Sentinel) of a role."""
    addresses = []
    for host in inventory.with_role(role):
        s = settings_of(host)
        if role == "sequence-redis":
            ports = [s.sequence_redis_port + i for i in range(s.sequence_redis_nodes)]
        else:
            ports = [s.sentinel_port if role == "sentinel" else s.task_redis_port]
        addresses += [f"{host.address}:{port}" for port in ports]
    return addresses


def host_of(inventory: Inventory, address: str) -> Host:
    """Return the host that owns an address (host:port)."""
    ip = address.rsplit(":", 1)[0]
    return next(h for h in inventory.hosts if h.address == ip)


def wait_redis(inventory: Inventory, password: str, wait_s: float) -> None:
    """Wait until every Redis server and Sentinel answers PING."""
    import health

    for role in ("task-redis", "sequence-redis", "sentinel"):
        for address in redis_addresses(inventory, role):
            ok, message = health.wait(
                health.check_redis_url(f"redis://{address}/0", password, role), wait_s
            )
            if not ok:
                logs = sorted((state_dir(host_of(inventory, address)) / "log").glob("*.log"))
                raise ClusterError(role, message, logs)
    log("every Redis server and Sentinel answers PING")


def check_redis_layouts(inventory: Inventory, settings: Settings, wait_s: float) -> None:
    """Make the sequence store's cluster once; check the task store and Sentinels."""
    password = settings.redis_admin_password
    nodes = redis_addresses(inventory, "sequence-redis")
    try:
        done = redis_topology.ensure_cluster(nodes, password, wait_s)
        log(f"Redis Cluster of {len(nodes)} nodes: {done}")
        primary, replicas = redis_topology.wait_until(
            lambda: redis_topology.check_task_store(
                redis_addresses(inventory, "task-redis"), password
            ),
            wait_s,
            "task store replica attached",
        )
        agreed = redis_topology.wait_until(
            lambda: redis_topology.check_sentinels(
                redis_addresses(inventory, "sentinel"),
                password,
                settings.task_redis_master_name,
                primary,
            ),
            wait_s,
            "Sentinels agree on the primary",
        )
    except redis_topology.TopologyError as exc:
        logs = [state_dir(h) / "log" / "sentinel.log" for h in inventory.with_role("sentinel")]
        raise ClusterError("redis", str(exc), logs) from None
    log(f"task store: primary {primary}, replicas {', '.join(replicas)}; {agreed}")


def converge(inventory: Inventory) -> int:
    """Wait for the stores and brokers; make the Redis Cluster and the topic once.

    Needs every host rendered here (their settings) and reaches each one
    over the network: the rehearsal runs it from the root namespace, an
    operator from any machine that reaches the hosts. Returns the wait per part.
    """
    kafka_host = inventory.with_role("kafka")[0]
    settings = settings_of(kafka_host)
    wait_s = settings.up_wait_s
    wait_redis(inventory, settings.redis_admin_password, wait_s)
    check_redis_layouts(inventory, settings, wait_s)
    kafka_logs = [
        state_dir(h) / "log" / name
        for h in inventory.with_role("kafka")
        for name in ("kafka.out.log", "kafka/server.log", "kafka/controller.log")
    ]
    topic = run_with_settings(
        kafka_host, ["ops/kafka/create_topic.py", "--wait-s", str(wait_s)], "kafka", kafka_logs
    )
    log(topic.removeprefix("kafka: "))
    return wait_s


def up(inventory: Inventory) -> str:
    """Bring the rehearsal up (or check the running one); return the entry URL."""
    if os.geteuid() != 0:
        raise ClusterError("rehearsal", "needs root (network namespaces)")
    started = time.monotonic()
    state = rehearsal_state(inventory)
    if state == "partial":
        log("a partial rehearsal is there: taking it down first")
        down(inventory)
    if state == "running":
        log("rehearsal already running: checking it")
        heal(inventory)
        revive(inventory)
    else:
        cold_start(inventory)
    wait_s = converge(inventory)
    app_hosts = [h for h in inventory.hosts if set(h.roles) & set(APP_ROLES)]
    start_apps(app_hosts, wait_s)
    log(f"apps running on {', '.join(h.name for h in app_hosts)}")
    nginx = inventory.with_role("nginx")[0]
    nginx_logs = [state_dir(nginx) / "log" / "nginx-error.log"] + [
        state_dir(h) / "log" / f"{app}.log" for h in app_hosts for app in ("submit", "fetch")
    ]
    http = run_with_settings(
        nginx, ["scripts/health.py", "http", "--wait-s", str(wait_s)], "nginx", nginx_logs
    )
    log(http.removeprefix("ok    "))
    log(f"rehearsal is up in {time.monotonic() - started:.1f} s")
    return settings_of(nginx).base_url


def down(inventory: Inventory) -> None:
    """Stop every supervisord, kill what is left, delete the network."""
    started = time.monotonic()
    wait_s = Settings().down_wait_s
    with contextlib.suppress(OSError, SettingsError):
        wait_s = settings_of(inventory.hosts[0]).down_wait_s
    running = {host.name: pid for host in inventory.hosts if (pid := supervisord_pid(host))}
    for host in inventory.hosts:
        if host.name in running:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                supervisor(host).shutdown()
    deadline = time.monotonic() + wait_s
    while any(alive(pid) for pid in running.values()) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if running:
        log(f"stopped {len(running)} supervisords in {time.monotonic() - started:.1f} s")
    leftovers = rehearsal_pids(inventory)
    if leftovers:
        log(f"killing {len(leftovers)} processes still running: {leftovers}")
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in leftovers) and time.monotonic() < deadline:
            time.sleep(0.1)
    netns.delete(inventory.bridge, inventory.namespace_prefix)
    still = rehearsal_pids(inventory)
    if still or netns.namespaces(inventory.namespace_prefix):
        raise ClusterError("down", f"left behind: processes {still}")
    log(f"rehearsal down in {time.monotonic() - started:.1f} s")


# --- Status -----------------------------------------------------------------------


def redis_role(address: str, password: str) -> str:
    """Return master or replica, as the server says; ? if it does not answer."""
    c = redis_topology.client(address, password)
    try:
        role = c.info("replication")["role"]
    except Exception:  # any failure is shown as unknown, never a crash of status
        return "?"
    finally:
        c.close()
    return "replica" if role == "slave" else role


def kafka_leader(inventory: Inventory) -> str | None:
    """Return the address of the active KRaft controller, from the quorum-state files."""
    best: tuple[int, int] | None = None
    for host in inventory.with_role("kafka"):
        path = state_dir(host) / "kafka" / "data" / "__cluster_metadata-0" / "quorum-state"
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(path.read_text())
            if data.get("leaderId", -1) >= 0:
                best = max(best or (-1, -1), (data["leaderEpoch"], data["leaderId"]))
    if best is None:
        return None
    nodes = {settings_of(h).kafka_node_id: h.address for h in inventory.with_role("kafka")}
    return nodes.get(best[1])


def status_lines(inventory: Inventory) -> Iterator[tuple[bool, str]]:
    """Yield (running, line) per process: HOST ROLE ADDRESS PID STATE."""
    leader = kafka_leader(inventory)
    for host in inventory.hosts:
        infos = processes(host) if supervisord_pid(host) else []
        if not infos:
            for role in host.roles:
                yield False, f"{host.name} {role} {host.address} - DOWN"
            continue
        settings = settings_of(host)
        for info in infos:
            role = PROGRAM_ROLES.get(info["group"], info["group"])
            running = info["statename"] == "RUNNING"
            state = info["statename"]
            if running and role in ("task-redis", "sequence-redis"):
                port = settings.task_redis_port
                if role == "sequence-redis":
                    port = settings.sequence_redis_port + int(info["name"].rsplit("-", 1)[1])
                state += " " + redis_role(f"{host.address}:{port}", settings.redis_admin_password)
            if running and role == "kafka" and host.address == leader:
                state += " controller"
            yield running, f"{host.name} {role} {host.address} {info['pid'] or '-'} {state}"


def status(inventory: Inventory) -> int:
    """Print one line per process; 0 only if every one runs."""
    ok = True
    for running, line in status_lines(inventory):
        ok = ok and running
        print(line, flush=True)
    return 0 if ok else 1


# --- Command line ----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run one command; a failure prints one line naming the part, and its logs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("secrets", "render", "converge", "start-apps", "up", "status", "down"),
    )
    parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY)
    parser.add_argument("--host", help="render, start-apps: the host")
    parser.add_argument("--secrets", type=Path, default=SECRETS_FILE)
    parser.add_argument("--out", type=Path, help="secrets: the file to write")
    args = parser.parse_args(argv)
    try:
        inventory = load_inventory(args.inventory)
        if args.command == "secrets":
            if args.out is None or args.out.exists():
                parser.error("secrets needs --out FILE, a file that does not exist yet")
            write_secrets(args.out)
            log(f"wrote {args.out} (mode 600): copy it to every host")
        elif args.command in ("render", "start-apps"):
            if not args.host:
                parser.error(f"{args.command} needs --host NAME")
            host = inventory.host(args.host)
            if args.command == "render":
                changed = render_host(inventory, host.name, args.secrets)
                what = "updated: " + ", ".join(changed) if changed else "unchanged"
                log(f"{host.name}: {state_dir(host) / 'conf'}/ {what}")
            elif set(host.roles) & set(APP_ROLES):
                wait_s = settings_of(host).up_wait_s
                run_with_settings(
                    host, ["ops/kafka/create_topic.py", "--check", "--wait-s", str(wait_s)],
                    "kafka", [],
                )  # fmt: skip
                start_apps([host], wait_s)
                log(f"{host.name}: apps running")
        elif args.command == "converge":
            converge(inventory)
        elif args.command == "up":
            print(up(inventory), flush=True)
        elif args.command == "status":
            return status(inventory)
        else:
            if os.geteuid() != 0:
                raise ClusterError("rehearsal", "needs root (network namespaces)")
            down(inventory)
    except (InventoryError, SettingsError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    except (ClusterError, netns.NetError) as exc:
        print(f"cluster: FAILED: {exc}", file=sys.stderr)
        show_logs(getattr(exc, "logs", []))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
