"""Check one part of the running stack, waiting a bounded time for it.

Reads the settings model (`fibod.config`): the scripts export the
effective settings before they call it, and a checkout's
var/conf/fibod.env is found otherwise. Prints one line per check and exits 0 when the
part is healthy, 1 when it is not by the end of --wait-s.

Usage:
  python scripts/health.py redis task|sequence [--wait-s S]
  python scripts/health.py http [--wait-s S] [--allow-missing-apps]
  python scripts/health.py ready [--wait-s S]
  python scripts/health.py ports-free [--wait-s S]

`ready` asks GET /readyz of the entry URL and of every app's and
worker's own port (200 each), and Kafka whether the worker group is
stable with every partition of the task topic assigned: then a task
submitted next is picked up at once.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import fields

from fibod.config import Settings, SettingsError, discover

#: Seconds one probe (a PING, a request, a connect) may take.
PROBE_TIMEOUT_S = 5.0
#: Seconds between two probes while waiting.
RETRY_PAUSE_S = 0.5
#: Statuses nginx makes itself when an app is not there.
GATEWAY_ERRORS = (502, 503, 504)


def stack_ports(settings: Settings) -> dict[str, int]:
    """Return every port the stack listens on, by setting name."""
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.name.endswith("_port")}


def wait(check: Callable[[], tuple[bool, str]], wait_s: float) -> tuple[bool, str]:
    """Call check until it passes or wait_s is over; return its last result."""
    deadline = time.monotonic() + wait_s
    while True:
        ok, message = check()
        if ok or time.monotonic() >= deadline:
            return ok, message
        time.sleep(RETRY_PAUSE_S)


def check_redis(settings: Settings, store: str) -> Callable[[], tuple[bool, str]]:
    """Return a check that PINGs one store's Redis server with the password."""
    url = settings.task_redis_url if store == "task" else settings.sequence_redis_url
    return check_redis_url(url, settings.redis_admin_password, f"{store}-redis")


def check_redis_url(url: str, password: str, label: str) -> Callable[[], tuple[bool, str]]:
    """Return a check that PINGs the Redis server (or Sentinel) at url, as the admin user."""
    import redis

    from fibod.config import REDIS_ADMIN_USER

    client = redis.Redis.from_url(
        url,
        username=REDIS_ADMIN_USER,
        password=password,
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
    )

    def check() -> tuple[bool, str]:
        try:
            client.ping()
            info = client.info("memory")
        except redis.RedisError as exc:
            return False, f"{label} {url}: {exc}"
        finally:
            client.close()
        used = info.get("used_memory_human", "?")
        policy = info.get("maxmemory_policy", "?")
        return True, f"{label} {url}: PONG, {used} used, policy {policy}"

    return check


def http_status(host: str, port: int, path: str) -> int:
    """GET path and return the status code (body read and dropped)."""
    return http_get(host, port, path)[0]


def http_get(host: str, port: int, path: str) -> tuple[int, str]:
    """GET path and return the status code and the body's first line."""
    conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, body.strip().split("\n", 1)[0]
    finally:
        conn.close()


def check_http(settings: Settings, allow_missing_apps: bool) -> Callable[[], tuple[bool, str]]:
    """Return a check that GETs the submit and fetch routes through nginx.

    Without the query parameters both apps must answer 4xx; nginx's own
    502/503/504 means the app behind it is missing, which only
    allow_missing_apps accepts.
    """
    host, port = settings.listen_address, settings.http_port
    paths = ("/myapp/fibo", "/myapp/fibotask")

    def check() -> tuple[bool, str]:
        results = []
        ok = True
        for path in paths:
            try:
                status = http_status(host, port, path)
            except OSError as exc:
                return False, f"nginx {host}:{port}: {exc}"
            results.append(f"GET {path} -> {status}")
            if status in GATEWAY_ERRORS:
                ok = ok and allow_missing_apps
            elif status >= 500:
                ok = False
        return ok, f"http {settings.base_url}: " + ", ".join(results)

    return check


def app_ports(settings: Settings) -> dict[str, int]:
    """Return the own port of each app and worker on this host, by name."""
    ports = {
        "submit": settings.submit_port,
        "fetch": settings.fetch_port,
        "vip": settings.vip_port,
        "monitor": settings.monitor_port,
    }
    workers = int(settings.workers) if settings.workers.isdigit() else 0
    for index in range(workers):
        ports[f"worker-{index}"] = settings.worker_metrics_port + index
    return ports


def check_ready(settings: Settings) -> Callable[[], tuple[bool, str]]:
    """Return a check that every /readyz answers 200 and the workers hold every partition."""
    host = settings.listen_address
    targets = {"entry": settings.http_port} | app_ports(settings)

    def check() -> tuple[bool, str]:
        waiting = []
        for name, port in targets.items():
            try:
                status, reason = http_get(host, port, "/readyz")
            except OSError as exc:
                status, reason = 0, str(exc)
            if status != 200:
                waiting.append(f"{name} /readyz {status or ''}: {reason}")
        group = worker_group_problem(settings)
        if group:
            waiting.append(group)
        if waiting:
            return False, "not ready: " + "; ".join(waiting)
        return True, f"ready: {', '.join(targets)}; every task partition assigned"

    return check


def worker_group_problem(settings: Settings) -> str | None:
    """Say why the worker group does not hold every partition yet (None: it does)."""
    from confluent_kafka import ConsumerGroupState

    from fibod.health import PROBE_TIMEOUT_S, kafka_admin

    admin = kafka_admin(settings)
    group, topic = settings.worker_group, settings.task_topic
    try:
        meta = admin.list_topics(topic=topic, timeout=PROBE_TIMEOUT_S)
        partitions = set(meta.topics[topic].partitions)
        found = admin.describe_consumer_groups([group], request_timeout=PROBE_TIMEOUT_S)
        description = found[group].result(timeout=PROBE_TIMEOUT_S * 2)
    except Exception as exc:  # KafkaException, a timeout, the topic missing
        return f"worker group {group}: {exc}"
    held = {
        tp.partition
        for member in description.members
        for tp in member.assignment.topic_partitions
        if tp.topic == topic
    }
    if description.state != ConsumerGroupState.STABLE:
        return f"worker group {group}: {description.state.name.lower()}"
    if held != partitions:
        return f"worker group {group}: {len(held)} of {len(partitions)} partitions assigned"
    return None


def check_ports_free(settings: Settings) -> Callable[[], tuple[bool, str]]:
    """Return a check that no port of the stack accepts connections (every worker's too)."""
    ports = {f"FIBOD_{name.upper()}": port for name, port in stack_ports(settings).items()}
    workers = int(settings.workers) if settings.workers.isdigit() else 1
    for index in range(1, workers):  # worker 0's is FIBOD_WORKER_METRICS_PORT itself
        ports[f"FIBOD_WORKER_METRICS_PORT + {index}"] = settings.worker_metrics_port + index
    host = settings.listen_address

    def check() -> tuple[bool, str]:
        busy = []
        for name, port in ports.items():
            with socket.socket() as sock:
                sock.settimeout(1.0)
                if sock.connect_ex((host, port)) == 0:
                    busy.append(f"{port} ({name})")
        if busy:
            return False, "ports still in use: " + ", ".join(busy)
        return True, "ports free: " + ", ".join(str(p) for p in ports.values())

    return check


def main(argv: list[str] | None = None) -> int:
    """Run the check named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("redis", "http", "ready", "ports-free"))
    parser.add_argument("store", nargs="?", choices=("task", "sequence"))
    parser.add_argument("--wait-s", type=float, default=0.0)
    parser.add_argument("--allow-missing-apps", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = discover()
    except SettingsError as exc:
        print(f"health: {exc}", file=sys.stderr)
        return 1
    if args.part == "redis":
        if args.store is None:
            parser.error("redis needs task or sequence")
        check = check_redis(settings, args.store)
    elif args.part == "http":
        check = check_http(settings, args.allow_missing_apps)
    elif args.part == "ready":
        check = check_ready(settings)
    else:
        check = check_ports_free(settings)
    ok, message = wait(check, args.wait_s)
    print(("ok    " if ok else "FAIL  ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
