"""Check one part of the running stack, waiting a bounded time for it.

Reads the effective settings from var/conf/fibod.env (written by
scripts/render_conf.py). Prints one line per check and exits 0 when the
part is healthy, 1 when it is not by the end of --wait-s.

Usage:
  python scripts/health.py redis task|sequence [--wait-s S]
  python scripts/health.py http [--wait-s S] [--allow-missing-apps]
  python scripts/health.py ports-free [--wait-s S]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fibod.envfile import read_env_file

ROOT = Path(__file__).resolve().parent.parent
EFFECTIVE_ENV_FILE = ROOT / "var" / "conf" / "fibod.env"
#: Seconds one probe (a PING, a request, a connect) may take.
PROBE_TIMEOUT_S = 5.0
#: Seconds between two probes while waiting.
RETRY_PAUSE_S = 0.5
#: Statuses nginx makes itself when an app is not there.
GATEWAY_ERRORS = (502, 503, 504)
#: Settings holding the ports the stack listens on.
PORT_SETTINGS = (
    "FIBOD_TASK_REDIS_PORT",
    "FIBOD_SEQUENCE_REDIS_PORT",
    "FIBOD_KAFKA_PORT",
    "FIBOD_KAFKA_CONTROLLER_PORT",
    "FIBOD_SUBMIT_PORT",
    "FIBOD_FETCH_PORT",
    "FIBOD_VIP_PORT",
    "FIBOD_HTTP_PORT",
)


def load_settings() -> dict[str, str]:
    """Read var/conf/fibod.env into a dict."""
    return read_env_file(EFFECTIVE_ENV_FILE)


def wait(check: Callable[[], tuple[bool, str]], wait_s: float) -> tuple[bool, str]:
    """Call check until it passes or wait_s is over; return its last result."""
    deadline = time.monotonic() + wait_s
    while True:
        ok, message = check()
        if ok or time.monotonic() >= deadline:
            return ok, message
        time.sleep(RETRY_PAUSE_S)


def check_redis(settings: dict[str, str], store: str) -> Callable[[], tuple[bool, str]]:
    """Return a check that PINGs one Redis server with the password."""
    import redis

    url = settings[f"FIBOD_{store.upper()}_REDIS_URL"]
    client = redis.Redis.from_url(
        url,
        password=settings["FIBOD_REDIS_PASSWORD"],
        socket_timeout=PROBE_TIMEOUT_S,
        socket_connect_timeout=PROBE_TIMEOUT_S,
    )

    def check() -> tuple[bool, str]:
        try:
            client.ping()
            info = client.info("memory")
        except redis.RedisError as exc:
            return False, f"{store}-redis {url}: {exc}"
        finally:
            client.close()
        used = info.get("used_memory_human", "?")
        policy = info.get("maxmemory_policy", "?")
        return True, f"{store}-redis {url}: PONG, {used} used, policy {policy}"

    return check


def http_status(host: str, port: int, path: str) -> int:
    """GET path and return the status code (body read and dropped)."""
    conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def check_http(
    settings: dict[str, str], allow_missing_apps: bool
) -> Callable[[], tuple[bool, str]]:
    """Return a check that GETs the submit and fetch routes through nginx.

    Without the query parameters both apps must answer 4xx; nginx's own
    502/503/504 means the app behind it is missing, which only
    allow_missing_apps accepts.
    """
    port = int(settings["FIBOD_HTTP_PORT"])
    paths = ("/myapp/fibo", "/myapp/fibotask")

    def check() -> tuple[bool, str]:
        results = []
        ok = True
        for path in paths:
            try:
                status = http_status("127.0.0.1", port, path)
            except OSError as exc:
                return False, f"nginx 127.0.0.1:{port}: {exc}"
            results.append(f"GET {path} -> {status}")
            if status in GATEWAY_ERRORS:
                ok = ok and allow_missing_apps
            elif status >= 500:
                ok = False
        return ok, f"http {settings['FIBOD_BASE_URL']}: " + ", ".join(results)

    return check


def check_ports_free(settings: dict[str, str]) -> Callable[[], tuple[bool, str]]:
    """Return a check that no port of the stack accepts connections."""
    ports = {name: int(settings[name]) for name in PORT_SETTINGS}

    def check() -> tuple[bool, str]:
        busy = []
        for name, port in ports.items():
            with socket.socket() as sock:
                sock.settimeout(1.0)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(f"{port} ({name})")
        if busy:
            return False, "ports still in use: " + ", ".join(busy)
        return True, "ports free: " + ", ".join(str(p) for p in ports.values())

    return check


def main(argv: list[str] | None = None) -> int:
    """Run the check named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("redis", "http", "ports-free"))
    parser.add_argument("store", nargs="?", choices=("task", "sequence"))
    parser.add_argument("--wait-s", type=float, default=0.0)
    parser.add_argument("--allow-missing-apps", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except OSError as exc:
        print(f"health: {exc} (run scripts/render_conf.py)", file=sys.stderr)
        return 1
    if args.part == "redis":
        if args.store is None:
            parser.error("redis needs task or sequence")
        check = check_redis(settings, args.store)
    elif args.part == "http":
        check = check_http(settings, args.allow_missing_apps)
    else:
        check = check_ports_free(settings)
    ok, message = wait(check, args.wait_s)
    print(("ok    " if ok else "FAIL  ") + message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
