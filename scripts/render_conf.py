"""Render the stack's *.in templates into var/conf/ from FIBOD_* settings.

Settings come, later ones winning, from the defaults below, var/fibod.env
(written with these defaults and a random Redis password when absent) and
FIBOD_* variables of the environment. Values derived from them (URLs,
paths, worker count, ...) are added unless set explicitly. Every
${NAME} in a template must be known, or rendering fails.

Writes var/conf/<file> for each template, only when its text changed, and
var/conf/fibod.env, the effective settings every program gets. Only the
standard library is used, so any Python 3.11 runs it.

Usage: python scripts/render_conf.py
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import sys
from pathlib import Path

from fibod.envfile import EnvFileError, read_env_file

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
CONF = VAR / "conf"
ENV_FILE = VAR / "fibod.env"
EFFECTIVE_ENV_FILE = CONF / "fibod.env"

#: Template -> rendered file name under var/conf/.
TEMPLATES = {
    ROOT / "supervisord.conf.in": "supervisord.conf",
    ROOT / "ops" / "nginx.conf.in": "nginx.conf",
    ROOT / "ops" / "kafka" / "server.properties.in": "kafka-server.properties",
    ROOT / "ops" / "redis" / "task-store.conf.in": "task-store.conf",
    ROOT / "ops" / "redis" / "sequence-store.conf.in": "sequence-store.conf",
}

#: Folders under var/ that the programs expect to exist.
VAR_DIRS = (
    "conf",
    "log",
    "log/kafka",
    "run",
    "tmp",
    "tmp/kafka",
    "kafka",
    "redis/task-store",
    "redis/sequence-store",
    "nginx",
    "nginx/client_body",
    "nginx/proxy",
    "nginx/fastcgi",
    "nginx/uwsgi",
    "nginx/scgi",
    "static",
)

#: Settings written to a new var/fibod.env, with what each is for.
DEFAULTS: dict[str, tuple[str, str]] = {
    "FIBOD_HTTP_PORT": ("8080", "nginx, the public entry point"),
    "FIBOD_SUBMIT_PORT": ("8001", "gunicorn running fibod.web:get_app()"),
    "FIBOD_FETCH_PORT": ("8002", "gunicorn running fibod.fetch:get_app()"),
    "FIBOD_TASK_REDIS_PORT": ("6391", "Redis #1, the task store"),
    "FIBOD_SEQUENCE_REDIS_PORT": ("6392", "Redis #2, the sequence store"),
    "FIBOD_KAFKA_PORT": ("9092", "Kafka broker listener"),
    "FIBOD_KAFKA_CONTROLLER_PORT": ("9093", "Kafka KRaft controller listener"),
    "FIBOD_KAFKA_HEAP": ("512m", "Kafka JVM heap (-Xms = -Xmx)"),
    "FIBOD_TASK_TOPIC": ("fibod.tasks", "Kafka topic that carries tasks"),
    "FIBOD_TASK_PARTITIONS": ("8", "partitions of the task topic (>= 2x the workers)"),
    "FIBOD_TASK_MAXMEMORY": ("1gb", "task store memory cap; full = writes refused"),
    "FIBOD_SEQUENCE_MAXMEMORY": ("4gb", "sequence store memory cap; full = LRU eviction"),
    "FIBOD_WORKERS": ("auto", "worker processes; auto = one per usable core"),
    "FIBOD_WORKER_PIN": ("1", "1 = pin worker N to core N with taskset"),
    "FIBOD_SUBMIT_WORKERS": ("2", "gunicorn processes of the submit app"),
    "FIBOD_SUBMIT_THREADS": ("8", "threads per submit process"),
    "FIBOD_FETCH_WORKERS": ("2", "gunicorn processes of the fetch app"),
    "FIBOD_FETCH_THREADS": ("16", "threads (= concurrent streams) per fetch process"),
    "FIBOD_VIP_PORT": ("8003", "gunicorn running fibod.vip:get_app(), the VIP sync path"),
    "FIBOD_VIP_WORKERS": ("1", "gunicorn processes dedicated to VIP streams"),
    "FIBOD_VIP_THREADS": ("4", "threads per VIP process (FIBOD_VIP_MAX_STREAMS of them stream)"),
    "FIBOD_RATE_LIMIT": ("200r/s", "nginx: submit requests per client address"),
    "FIBOD_RATE_BURST": ("400", "nginx: submit requests queued above the rate"),
    "FIBOD_FETCH_CONN_LIMIT": (
        "16",
        "nginx: open fetch connections per client address (keep below the fetch threads)",
    ),
    "FIBOD_FETCH_TIMEOUT_S": ("3600", "nginx: longest pause in a fetch stream"),
}

#: Settings derived from the others unless set in var/fibod.env or the environment.
DERIVED_DOC = {
    "FIBOD_TASK_REDIS_URL": "redis://127.0.0.1:$FIBOD_TASK_REDIS_PORT/0",
    "FIBOD_SEQUENCE_REDIS_URL": "redis://127.0.0.1:$FIBOD_SEQUENCE_REDIS_PORT/0",
    "FIBOD_KAFKA_BOOTSTRAP": "127.0.0.1:$FIBOD_KAFKA_PORT",
    "FIBOD_BASE_URL": "http://127.0.0.1:$FIBOD_HTTP_PORT",
}

INT_SETTINGS = (
    "FIBOD_HTTP_PORT",
    "FIBOD_SUBMIT_PORT",
    "FIBOD_FETCH_PORT",
    "FIBOD_TASK_REDIS_PORT",
    "FIBOD_SEQUENCE_REDIS_PORT",
    "FIBOD_KAFKA_PORT",
    "FIBOD_KAFKA_CONTROLLER_PORT",
    "FIBOD_TASK_PARTITIONS",
    "FIBOD_SUBMIT_WORKERS",
    "FIBOD_SUBMIT_THREADS",
    "FIBOD_FETCH_WORKERS",
    "FIBOD_FETCH_THREADS",
    "FIBOD_VIP_PORT",
    "FIBOD_VIP_WORKERS",
    "FIBOD_VIP_THREADS",
    "FIBOD_RATE_BURST",
    "FIBOD_FETCH_CONN_LIMIT",
    "FIBOD_FETCH_TIMEOUT_S",
)
#: Settings checked against a pattern before they reach a config file.
PATTERNS = {
    "FIBOD_REDIS_PASSWORD": r"[A-Za-z0-9]{16,128}",
    "FIBOD_TASK_MAXMEMORY": r"\d+(b|kb|mb|gb)?",
    "FIBOD_SEQUENCE_MAXMEMORY": r"\d+(b|kb|mb|gb)?",
    "FIBOD_KAFKA_HEAP": r"\d+[kmg]",
    "FIBOD_RATE_LIMIT": r"\d+r/[sm]",
    "FIBOD_TASK_TOPIC": r"[A-Za-z0-9._-]{1,249}",
    "FIBOD_WORKERS": r"auto|\d+",
    "FIBOD_WORKER_PIN": r"[01]",
}
#: Largest open-file limit asked of supervisord (it fails above the hard limit).
MAX_FDS = 65536
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class ConfigError(Exception):
    """A setting or template that cannot be rendered."""


def write_new_env_file(path: Path) -> None:
    """Write the defaults and a fresh random Redis password to path."""
    lines = [
        "# fibod settings of this machine, written by scripts/render_conf.py on the",
        "# first `make up`. Edit, then `make up` to apply (it restarts the stack when",
        "# the rendered configuration changed). FIBOD_* variables in the environment",
        "# of `make up` override this file; any other FIBOD_* line added here",
        "# (FIBOD_LOG_LEVEL, FIBOD_MAX_SN, ...) is passed to every program too.",
        "",
        "# Password of both Redis servers.",
        f"FIBOD_REDIS_PASSWORD={secrets.token_hex(24)}",
        "",
        VIP_KEYS_DOC,
        f"FIBOD_VIP_API_KEYS={secrets.token_hex(24)}",
    ]
    for key, (value, doc) in DEFAULTS.items():
        lines += ["", f"# {doc}", f"{key}={value}"]
    lines += ["", "# Derived unless set here:"]
    lines += [f"# {key}={value}" for key, value in DERIVED_DOC.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


VIP_KEYS_DOC = "# API keys of the VIP sync path (/myapp/vip/fibo), comma-separated; empty = off."


def ensure_vip_keys(path: Path) -> None:
    """Give an env file written before the VIP path existed a key of its own."""
    if "FIBOD_VIP_API_KEYS" in read_env_file(path):
        return
    with path.open("a") as env_file:
        env_file.write(f"\n{VIP_KEYS_DOC}\nFIBOD_VIP_API_KEYS={secrets.token_hex(24)}\n")


def settings(environ: dict[str, str]) -> dict[str, str]:
    """Merge defaults, var/fibod.env and environ; add derived settings."""
    merged = {key: value for key, (value, _doc) in DEFAULTS.items()}
    merged.update(read_env_file(ENV_FILE))
    merged.update({k: v for k, v in environ.items() if k.startswith("FIBOD_") and k in merged})
    for key in (
        "FIBOD_TASK_REDIS_URL",
        "FIBOD_SEQUENCE_REDIS_URL",
        "FIBOD_KAFKA_BOOTSTRAP",
        "FIBOD_BASE_URL",
    ):
        if key in environ:
            merged[key] = environ[key]
    if not merged.get("FIBOD_REDIS_PASSWORD"):
        raise ConfigError(f"FIBOD_REDIS_PASSWORD is empty (delete {ENV_FILE} to get a new one)")
    for key in INT_SETTINGS:
        if not merged[key].isdigit() or int(merged[key]) <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {merged[key]!r}")
    for key, pattern in PATTERNS.items():
        if not re.fullmatch(pattern, merged[key], re.IGNORECASE):
            raise ConfigError(f"{key}={merged[key]!r} does not match {pattern}")

    cores = sorted(os.sched_getaffinity(0))
    if merged["FIBOD_WORKERS"] == "auto":
        merged["FIBOD_WORKERS"] = str(len(cores))
    merged.setdefault(
        "FIBOD_TASK_REDIS_URL", f"redis://127.0.0.1:{merged['FIBOD_TASK_REDIS_PORT']}/0"
    )
    merged.setdefault(
        "FIBOD_SEQUENCE_REDIS_URL", f"redis://127.0.0.1:{merged['FIBOD_SEQUENCE_REDIS_PORT']}/0"
    )
    merged.setdefault("FIBOD_KAFKA_BOOTSTRAP", f"127.0.0.1:{merged['FIBOD_KAFKA_PORT']}")
    merged.setdefault("FIBOD_BASE_URL", f"http://127.0.0.1:{merged['FIBOD_HTTP_PORT']}")
    return merged


def supervisor_quote(value: str) -> str:
    """Quote a value for supervisord's environment= (and its %-expansion)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%") + '"'


def template_values(public: dict[str, str]) -> dict[str, str]:
    """Add the template-only values (paths, binaries, limits) to public."""
    import resource  # Unix only, like the rest of the stack.

    cores = sorted(os.sched_getaffinity(0))
    workers = int(public["FIBOD_WORKERS"])
    taskset = shutil.which("taskset")
    # Worker N runs on core N: only when cores are 0..n-1 and enough of them.
    pin = (
        public["FIBOD_WORKER_PIN"] == "1"
        and taskset
        and cores == list(range(len(cores)))
        and workers <= len(cores)
    )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = MAX_FDS if hard == resource.RLIM_INFINITY else min(hard, MAX_FDS)
    env = {"PYTHONUNBUFFERED": "1", **public}
    values = dict(public)
    values.update(
        {
            "FIBOD_ROOT": str(ROOT),
            "FIBOD_VAR": str(VAR),
            "FIBOD_WORKER_TASKSET": f"{taskset} -c %(process_num)d " if pin else "",
            "FIBOD_MINFDS": str(limit),
            "FIBOD_SUPERVISOR_ENV": ",".join(f"{k}={supervisor_quote(v)}" for k, v in env.items()),
            "FIBOD_REDIS_SERVER_BIN": shutil.which("redis-server") or "/usr/bin/redis-server",
            "FIBOD_NGINX_BIN": shutil.which("nginx", path=os.environ.get("PATH", "") + ":/usr/sbin")
            or "/usr/sbin/nginx",
            # Workers of a root master would switch to `nobody`, who may not
            # reach a repo under /root; as another user the directive is moot.
            "FIBOD_NGINX_USER_DIRECTIVE": "user root root;" if os.geteuid() == 0 else "",
        }
    )
    return values


def render(text: str, values: dict[str, str], source: Path) -> str:
    """Replace each ${NAME} in text; fail on a name without a value."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise ConfigError(f"{source.relative_to(ROOT)}: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write text to path atomically unless it already holds it."""
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def main() -> int:
    """Make var/, the env file and every rendered config; report changes."""
    for sub in VAR_DIRS:
        (VAR / sub).mkdir(parents=True, exist_ok=True)
    try:
        if not ENV_FILE.exists():
            write_new_env_file(ENV_FILE)
            print(f"render: wrote {ENV_FILE.relative_to(ROOT)} with a new Redis password")
        ensure_vip_keys(ENV_FILE)
        public = settings(dict(os.environ))
        values = template_values(public)
        changed = []
        for source, name in TEMPLATES.items():
            text = render(source.read_text(), values, source)
            if write_if_changed(CONF / name, text):
                changed.append(name)
        env_text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in public.items())
        header = "# Effective fibod settings, written by scripts/render_conf.py: do not edit.\n"
        if write_if_changed(EFFECTIVE_ENV_FILE, header + env_text, mode=0o600):
            changed.append("fibod.env")
    except (ConfigError, EnvFileError, OSError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    print(f"render: var/conf/ {'updated: ' + ', '.join(changed) if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
