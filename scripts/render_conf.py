"""Render the stack's config templates from the one settings model.

Settings come from `fibod.config` (defaults, ranges, docs), then the
machine's settings file (var/fibod.env, written on the first run with
random passwords, a VIP key and an id secret; secrets an older file lacks
are added to it), then FIBOD_* variables of the environment, which win.
Every ${FIBOD_NAME} in a template must be a setting (or one of the few
template-only values below), or rendering fails; so does any setting out
of its range, with a one-line reason.

Writes <state dir>/conf/<file> for each template, only when its text
changed, and <state dir>/conf/fibod.env: every effective setting, which
`make up` hands to supervisord and the CLI finds by itself. Files that
hold a secret are created mode 600 (never readable by others, not even
for a moment).

Usage: python scripts/render_conf.py [--settings FILE] [--where]
(--where only prints the path of the effective settings file.)
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import state_access
from run_user import Resolution, RunUser, resolve

from fibod import textcache
from fibod.config import ADMIN_USER, APP_USER, REDIS_ADMIN_USER, Settings, SettingsError, load
from fibod.envfile import read_env_file

ROOT = Path(__file__).resolve().parent.parent
#: The machine's settings: edited by the operator, never by the renderer after creation.
SETTINGS_FILE = ROOT / "var" / "fibod.env"

#: Template -> (rendered file name under <state dir>/conf/, holds a secret).
TEMPLATES = {
    ROOT / "ops" / "nginx.conf.in": ("nginx.conf", False),
    ROOT / "ops" / "nginx-streaming.conf.in": ("nginx-streaming.conf", False),
    ROOT / "ops" / "nginx-cache.conf.in": ("nginx-cache.conf", False),
    ROOT / "ops" / "kafka" / "server.properties.in": ("kafka-server.properties", True),
    ROOT / "ops" / "kafka" / "users.args.in": ("kafka-users.args", True),
    ROOT / "ops" / "redis" / "task-store.conf.in": ("task-store.conf", True),
    ROOT / "ops" / "redis" / "sequence-store.conf.in": ("sequence-store.conf", True),
    ROOT / "ops" / "logrotate.conf.in": ("logrotate.conf", False),
}
#: Templates of the parts that exist only across hosts, rendered when set up.
SENTINEL_TEMPLATE = ROOT / "ops" / "redis" / "sentinel.conf.in"
SEQUENCE_NODE_TEMPLATE = ROOT / "ops" / "redis" / "sequence-node.conf.in"
#: The effective settings, under <state dir>/conf/.
EFFECTIVE_NAME = "fibod.env"
#: Starts the comment of the effective settings that says why FIBOD_RUN_USER fell back.
FALLBACK_NOTE = "FIBOD_RUN_USER fell back: "

#: Folders under the state dir that the programs expect to exist.
STATE_DIRS = (
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
    "metrics",
)
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class ConfigError(Exception):
    """A template that cannot be rendered."""


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write text atomically to a file created with `mode` from the start."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)


#: Secrets the stack cannot run without.
REQUIRED_SECRETS = (
    "redis_password",
    "redis_admin_password",
    "kafka_password",
    "kafka_admin_password",
)
#: Secret settings a settings file gets at random, with what each is for.
SECRETS = {
    "FIBOD_REDIS_PASSWORD": "Password of the Redis user the apps log in as (fibod).",
    "FIBOD_REDIS_ADMIN_PASSWORD": "Password of the Redis admin user (fibod-admin), not the apps'.",
    "FIBOD_KAFKA_PASSWORD": "Password of the Kafka user the apps log in as (fibod).",
    "FIBOD_KAFKA_ADMIN_PASSWORD": "Password of the Kafka admin user (fibod-admin), not the apps'.",
    "FIBOD_VIP_API_KEYS": "API keys of the VIP path (/myapp/vip/fibo), comma-separated; empty=off.",
    "FIBOD_ID_SECRET": "Key of the MAC in task ids: the same on every API host.",
}


def new_secrets(missing: Iterable[str] = SECRETS) -> list[str]:
    """Return the lines of a settings file that set fresh secrets."""
    lines = []
    for name in missing:
        lines += [f"# {SECRETS[name]}", f"{name}={secrets.token_hex(24)}", ""]
    return lines


def add_missing_secrets(path: Path) -> list[str]:
    """Append the secrets a settings file lacks (one written by an older fibod)."""
    have = read_env_file(path)
    missing = [name for name in SECRETS if name not in have]
    if missing:
        with path.open("a") as settings_file:
            settings_file.write("\n" + "\n".join(new_secrets(missing)))
    return missing


def write_new_settings_file(path: Path) -> None:
    """Write a settings file holding fresh secrets and pointers to the rest."""
    text = "\n".join(
        [
            "# fibod settings of this machine, written by scripts/render_conf.py on the",
            "# first `make up`. Add FIBOD_NAME=value lines to change a default (every",
            "# setting, its range and its default: docs/OPERATIONS.md or",
            "# `python -m fibod.config --markdown`), then `make up` to apply. FIBOD_*",
            "# variables in the environment of `make up` override this file.",
            "",
            *new_secrets(),
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, text)


def effective_settings(environ: dict[str, str], settings_file: Path) -> Settings:
    """Load the settings; resolve what the stack needs resolved (workers=auto)."""
    settings = load(environ, settings_file)
    for name in (
        "redis_password",
        "redis_admin_password",
        "kafka_password",
        "kafka_admin_password",
    ):
        if not getattr(settings, name):
            raise SettingsError(
                f"FIBOD_{name.upper()} is empty (delete the line from {settings_file} "
                "to get a new one)"
            )
    if settings.workers == "auto":
        env = settings.to_env() | {"FIBOD_WORKERS": str(len(os.sched_getaffinity(0)))}
        settings = load(env)
    return settings


def with_run_user(settings: Settings) -> tuple[Settings, Resolution]:
    """Settings whose FIBOD_RUN_USER is who the programs will run as (scripts/run_user.py)."""
    resolution = resolve(settings)
    return load(settings.to_env() | {"FIBOD_RUN_USER": resolution.user}), resolution


def redis_acl(settings: Settings) -> str:
    """The users of every Redis server: the apps' (fibod:* keys, no dangerous
    or admin command: no FLUSHALL, CONFIG, KEYS, SHUTDOWN ...; INFO, for the
    monitor's memory figures) and the admin
    (the default user, with a password: fibod/config.py says why)."""
    return "\n".join(
        [
            f"user {REDIS_ADMIN_USER} on >{settings.redis_admin_password} ~* &* +@all",
            f"user {APP_USER} on >{settings.redis_password} resetkeys ~fibod:* resetchannels "
            "-@all +@read +@write +@keyspace +@string +@hash +@list +@stream +@transaction "
            "+@scripting +@connection -@dangerous +wait +readonly +info "
            "+cluster|slots +cluster|shards +cluster|nodes",
        ]
    )


def sentinel_acl(settings: Settings) -> str:
    """The users of a Sentinel: the apps may only ask where the primary is."""
    return "\n".join(
        [
            f"user {REDIS_ADMIN_USER} on >{settings.redis_admin_password} ~* &* +@all",
            f"user {APP_USER} on >{settings.redis_password} -@all +auth +hello +ping "
            "+client|setname +sentinel|get-master-addr-by-name +sentinel|masters "
            "+sentinel|master +sentinel|sentinels +sentinel|replicas +sentinel|slaves",
        ]
    )


def template_values(settings: Settings) -> dict[str, str]:
    """Every setting as FIBOD_<NAME>, plus the template-only values."""
    values = settings.to_env()
    values["FIBOD_REDIS_ACL"] = redis_acl(settings)
    values["FIBOD_SENTINEL_ACL"] = sentinel_acl(settings)
    values["FIBOD_REDIS_ADMIN_USER"] = REDIS_ADMIN_USER
    values["FIBOD_ADMIN_USER"] = ADMIN_USER
    values["FIBOD_APP_USER"] = APP_USER
    # nginx runs as the run user, master and workers (8080 needs no root).
    # Only when everything runs as root (the fallback) is the master root:
    # its workers would switch to `nobody`, who may not reach a checkout
    # under /root, so they stay root too.
    run_user = RunUser.named(settings.run_user)
    values["FIBOD_NGINX_USER_DIRECTIVE"] = "user root root;" if run_user.uid == 0 else ""
    # logrotate makes nginx's new log files the run user's, who reopens them.
    values["FIBOD_RUN_USER_ID"] = str(run_user.uid)
    values["FIBOD_RUN_GROUP_ID"] = str(run_user.gid)
    # nginx: one `server` line per app server; a request tries each at most once.
    for app, upstreams in (
        ("SUBMIT", settings.submit_upstreams),
        ("FETCH", settings.fetch_upstreams),
        ("VIP", settings.vip_upstreams),
        ("MONITOR", settings.monitor_upstreams),
    ):
        servers = upstreams.split(",")
        values[f"FIBOD_{app}_SERVERS"] = "\n        ".join(
            f"server {server} max_fails={settings.upstream_max_fails} "
            f"fail_timeout={settings.upstream_fail_timeout_s}s;"
            for server in servers
        )
        values[f"FIBOD_{app}_TRIES"] = str(len(servers))
    # The operators' pages: who may see them, where the dashboard's files are.
    if settings.monitor_allow == "all":
        values["FIBOD_MONITOR_ALLOW_DIRECTIVES"] = "allow all;"
    else:
        allowed = " ".join(f"allow {cidr};" for cidr in settings.monitor_allow.split(","))
        values["FIBOD_MONITOR_ALLOW_DIRECTIVES"] = f"{allowed} deny all;"
    values["FIBOD_DASHBOARD_DIR"] = str(ROOT / "ops" / "dashboard")
    values["FIBOD_ACCESS_LOG_FORMAT"] = "fibod_json" if settings.log_format == "json" else "fibod"
    # The text cache's internal locations: the URI the fetch app redirects to.
    values["FIBOD_TEXT_CACHE_URI"] = textcache.ACCEL_PREFIX
    # Redis: a task-store replica follows its primary; Sentinels watch the primary.
    replica_of = settings.task_redis_replica_of.replace(":", " ")
    values["FIBOD_TASK_REDIS_REPLICAOF_DIRECTIVE"] = f"replicaof {replica_of}" if replica_of else ""
    primary = urlsplit(settings.task_redis_url)
    values["FIBOD_TASK_REDIS_PRIMARY_HOST"] = primary.hostname or settings.listen_address
    values["FIBOD_TASK_REDIS_PRIMARY_PORT"] = str(primary.port or settings.task_redis_port)
    return values


def optional_templates(settings: Settings) -> list[tuple[Path, str, dict[str, str], str]]:
    """Return (template, file name, extra values, data folder) of cross-host parts.

    The sequence store's cluster nodes exist when FIBOD_SEQUENCE_REDIS_CLUSTER
    is set, the Sentinel when FIBOD_TASK_REDIS_SENTINELS is; one machine
    renders neither.
    """
    parts: list[tuple[Path, str, dict[str, str], str]] = []
    if settings.sequence_redis_cluster:
        for index in range(settings.sequence_redis_nodes):
            port = str(settings.sequence_redis_port + index)
            extra = {"FIBOD_NODE_INDEX": str(index), "FIBOD_NODE_PORT": port}
            node = f"sequence-node-{index}"
            parts.append((SEQUENCE_NODE_TEMPLATE, f"{node}.conf", extra, f"redis/{node}"))
    if settings.task_redis_sentinels:
        parts.append((SENTINEL_TEMPLATE, "sentinel.conf", {}, "sentinel"))
    return parts


def render(text: str, values: dict[str, str], source: Path) -> str:
    """Replace each ${NAME} in text; fail on a name without a value."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise ConfigError(f"{source.relative_to(ROOT)}: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def write_if_changed(path: Path, text: str, private: bool) -> bool:
    """Write text to path atomically unless it already holds it."""
    if path.exists() and path.read_text() == text:
        return False
    write_private(path, text, 0o600 if private else 0o644)
    return True


def render_all(settings: Settings, fallback_reason: str | None = None) -> list[str]:
    """Make the state dir and every rendered file; return the changed names.

    Owners and modes follow FIBOD_RUN_USER (scripts/state_access.py); a
    fallback reason is recorded in the effective settings.
    """
    state = Path(settings.state_dir)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.chmod(0o700)  # logs and data of the stack are not for other users
    for sub in STATE_DIRS:
        (state / sub).mkdir(parents=True, exist_ok=True)
    values = template_values(settings)
    jobs = [(source, name, private, values) for source, (name, private) in TEMPLATES.items()]
    for source, name, extra, data_dir in optional_templates(settings):
        jobs.append((source, name, True, values | extra))
        (state / data_dir).mkdir(parents=True, exist_ok=True)
    run_user = RunUser.named(settings.run_user)
    changed = []
    for source, name, private, job_values in jobs:
        path = state / "conf" / name
        if write_if_changed(path, render(source.read_text(), job_values, source), private):
            changed.append(name)
        if private:  # the programs read it as the run user: its group may, nobody else
            state_access.give_group_read(path, run_user)
    env_text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.to_env().items())
    header = "# Effective fibod settings, written by scripts/render_conf.py: do not edit.\n"
    if fallback_reason:
        header += f"# {FALLBACK_NOTE}{fallback_reason}\n"
    if write_if_changed(state / "conf" / EFFECTIVE_NAME, header + env_text, private=True):
        changed.append(EFFECTIVE_NAME)
    logs = [f"{Path(name).stem}.log" for _s, name, _e, _d in optional_templates(settings)]
    state_access.apply(state, run_user, logs)
    # the fetch app writes the text cache, nginx (as the same user) reads it
    state_access.give_folder(Path(settings.text_cache_dir), run_user)
    return changed


def main(argv: list[str] | None = None) -> int:
    """Make the settings file if absent, then render; one line on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, default=SETTINGS_FILE)
    parser.add_argument("--where", action="store_true", help="print the effective file's path")
    args = parser.parse_args(argv)
    try:
        if args.where:
            settings = load(dict(os.environ), args.settings if args.settings.exists() else None)
            print(Path(settings.state_dir) / "conf" / EFFECTIVE_NAME)
            return 0
        if not args.settings.exists():
            write_new_settings_file(args.settings)
            print(f"render: wrote {args.settings} with new passwords and a VIP key")
        elif added := add_missing_secrets(args.settings):
            print(f"render: added {', '.join(added)} to {args.settings}")
        settings, resolution = with_run_user(effective_settings(dict(os.environ), args.settings))
        if resolution.fallback_reason:
            print(f"render: {resolution.warning()}", file=sys.stderr)
        changed = render_all(settings, resolution.fallback_reason)
    except (ConfigError, SettingsError, OSError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    where = Path(settings.state_dir) / "conf"
    print(f"render: {where}/ {'updated: ' + ', '.join(changed) if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
