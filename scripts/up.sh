#!/usr/bin/env bash
# Bring up the whole fibod stack on this machine (make up).
#
# Installs what is missing (Debian packages, .venv, Kafka jars), renders
# var/conf/ from the templates, starts supervisord, then waits a bounded
# time for each part in order: Redis x2, Kafka + task topic, the apps,
# nginx. On failure it names the part, shows its log and exits non-zero;
# on success it prints the base URL. Safe to run again: a running stack
# with unchanged configuration is only checked.
#
# Environment: FIBOD_* settings override var/fibod.env (docs/OPERATIONS.md);
# FIBOD_UP_WAIT_S (default 90) bounds each wait; FIBOD_UP_SKIP_APPS=1 leaves
# the apps stopped and accepts nginx's 502 (for testing the infrastructure).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VAR=$ROOT/var
PY=$ROOT/.venv/bin/python
SUPERVISORD=$ROOT/.venv/bin/supervisord
SV_CONF=$VAR/conf/supervisord.conf
SV_PIDFILE=$VAR/run/supervisord.pid
STAMP=$VAR/run/stack.sha256
WAIT_S=${FIBOD_UP_WAIT_S:-90}
SKIP_APPS=${FIBOD_UP_SKIP_APPS:-0}
START_S=$SECONDS

log() { printf 'up: %s\n' "$*"; }

# Print the last lines of each existing log file given.
show_logs() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '--- last lines of %s ---\n' "${f#"$ROOT"/}" >&2
        tail -n 30 "$f" >&2
    done
}

# fail PART MESSAGE [LOG...]: report a failed part with its logs and exit.
fail() {
    local part=$1 message=$2
    shift 2
    printf 'up: FAILED: %s: %s\n' "$part" "$message" >&2
    show_logs "$@"
    exit 1
}

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        fail packages "not root and no sudo to run: $*"
    fi
}

sv() { "$ROOT/.venv/bin/supervisorctl" -c "$SV_CONF" "$@"; }

# True if the pid runs (a zombie left by a killed daemon does not count).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

supervisord_running() {
    [[ -s $SV_PIDFILE ]] && alive "$(cat "$SV_PIDFILE")" &&
        [[ $(ps -o args= -p "$(cat "$SV_PIDFILE")") == *supervisord* ]]
}

# Install the Debian packages whose programs are missing.
install_packages() {
    local -a missing=()
    [[ -x /usr/bin/redis-server && -x /usr/bin/redis-cli ]] || missing+=(redis-server)
    [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v pgrep >/dev/null || missing+=(procps)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    # Keep postinst from starting the distro's own redis/nginx services: a
    # policy-rc.d that says 101 makes invoke-rc.d skip them, and the install
    # does not fail where no init system runs (containers).
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
        made_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120 update || rc=$?
    if ((rc == 0)); then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null || rc=$?
    fi
    if ((made_policy)); then
        as_root rm -f "$policy"
    fi
    ((rc == 0)) || fail packages "apt-get failed (exit $rc) installing ${missing[*]}"
    # Under systemd, keep the distro services from starting at boot; ours
    # use other ports, so a running distro service does no harm meanwhile.
    if [[ -d /run/systemd/system ]]; then
        local unit
        for unit in redis-server nginx; do
            as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
        done
    fi
}

check_java() {
    local version
    version=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p')
    if [[ -z $version || ${version%%.*} -lt 17 ]]; then
        fail java "Kafka 4 needs Java 17 or newer, found '${version:-none}' ($(command -v java))"
    fi
}

ensure_venv() {
    if [[ -x $PY && -x $SUPERVISORD ]] && "$PY" -c 'import confluent_kafka, redis, gunicorn' 2>/dev/null; then
        return 0
    fi
    log "creating .venv (make install)"
    make -C "$ROOT" install || fail venv "make install failed"
    [[ -x $SUPERVISORD ]] || fail venv "no .venv/bin/supervisord after make install (supervisor missing from the install)"
    "$PY" -c 'import confluent_kafka, redis, gunicorn' || fail venv "confluent_kafka, redis or gunicorn missing from .venv"
}

conf_digest() {
    (cd "$VAR/conf" && sha256sum supervisord.conf nginx.conf kafka-server.properties \
        task-store.conf sequence-store.conf fibod.env) | sha256sum | cut -d' ' -f1
}

start_supervisord() {
    local digest
    digest=$(conf_digest)
    if supervisord_running; then
        if [[ -f $STAMP && $(cat "$STAMP") == "$digest" ]]; then
            log "supervisord already running (pid $(cat "$SV_PIDFILE"))"
            # Revive a part that gave up (FATAL) since the last start.
            sv start task-redis sequence-redis kafka nginx >/dev/null 2>&1 || true
            return 0
        fi
        log "configuration changed since the stack started: restarting it"
        "$ROOT/scripts/down.sh"
    fi
    if ! "$PY" scripts/health.py ports-free >/dev/null; then
        "$PY" scripts/health.py ports-free >&2 || true
        fail ports "another program holds a port of the stack (see above; make down, or change FIBOD_*_PORT)"
    fi
    log "starting supervisord"
    "$SUPERVISORD" -c "$SV_CONF" || fail supervisord "supervisord did not start" "$VAR/log/supervisord.log"
    echo "$digest" >"$STAMP"
}

wait_redis() {
    local store=$1
    "$PY" scripts/health.py redis "$store" --wait-s "$WAIT_S" ||
        fail "$store-redis" "no PONG within $WAIT_S s" "$VAR/log/$store-redis.log" "$VAR/log/$store-redis.out.log"
}

wait_kafka() {
    "$PY" ops/kafka/create_topic.py --wait-s "$WAIT_S" ||
        fail kafka "broker or topic not ready within $WAIT_S s" "$VAR/log/kafka.out.log" "$VAR/log/kafka/server.log"
}

# Start the apps and wait until supervisor reports all of them RUNNING.
start_apps() {
    local -a programs=(worker:* submit fetch vip)
    sv start "${programs[@]}" >/dev/null 2>&1 || true
    local deadline=$((SECONDS + WAIT_S)) status bad
    while :; do
        status=$(sv status "${programs[@]}" 2>&1 || true)
        bad=$(awk '$2 != "RUNNING" {print $1 " " $2}' <<<"$status")
        [[ -z $bad ]] && return 0
        if grep -q ' FATAL' <<<"$bad" || ((SECONDS >= deadline)); then
            local name _state logs=()
            while read -r name _state; do
                logs+=("$VAR/log/${name#worker:}.log")
            done <<<"$bad"
            fail apps "not running: $(tr '\n' ';' <<<"$bad")" "${logs[@]}"
        fi
        sleep 1
    done
}

wait_http() {
    local -a allow=()
    [[ $SKIP_APPS == 1 ]] && allow=(--allow-missing-apps)
    "$PY" scripts/health.py http --wait-s "$WAIT_S" "${allow[@]}" ||
        fail nginx "routes do not answer as expected within $WAIT_S s" \
            "$VAR/log/nginx-error.log" "$VAR/log/nginx.out.log" "$VAR/log/submit.log" "$VAR/log/fetch.log"
}

install_packages
check_java
ensure_venv
ops/kafka/fetch.sh || fail kafka "fetching the broker jars failed"
"$PY" scripts/render_conf.py || fail config "rendering var/conf/ failed"
/usr/sbin/nginx -q -t -p "$VAR/nginx/" -c "$VAR/conf/nginx.conf" -e "$VAR/log/nginx-error.log" ||
    fail config "nginx rejects var/conf/nginx.conf (from ops/nginx.conf.in)"
set -a
# shellcheck source=/dev/null
source "$VAR/conf/fibod.env"
set +a

start_supervisord
wait_redis task
wait_redis sequence
wait_kafka
if [[ $SKIP_APPS == 1 ]]; then
    log "FIBOD_UP_SKIP_APPS=1: not starting worker, submit, fetch, vip"
else
    start_apps
fi
wait_http

sv status || true
log "stack is up in $((SECONDS - START_S)) s: $FIBOD_BASE_URL"
