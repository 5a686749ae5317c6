#!/usr/bin/env bash
# Bring up the whole fibod stack on this machine (make up).
#
# Checks the Debian packages (make deps installs them) and .venv, fetches
# the Kafka jars, renders the configs from the settings model
# (scripts/render_conf.py), starts supervisord with the effective
# settings in its environment, then waits a bounded time for each part in
# order: Redis x2, Kafka + task topic, the apps, nginx. On failure it
# names the part, shows its log and exits non-zero; on success it prints
# the base URL. Safe to run again: a running stack with unchanged
# configuration is only checked.
#
# FIBOD_* settings in the environment override var/fibod.env and are
# recorded in the effective settings (docs/OPERATIONS.md lists them all).
# supervisord runs as root; every program runs as FIBOD_RUN_USER, which the
# renderer creates and checks (scripts/run_user.py), or as the invoking
# user with one warning line when that user cannot reach this checkout.
set -euo pipefail
SCRIPT_NAME=up
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"
START_S=$SECONDS

check_packages() {
    local program
    for program in redis-server nginx java mvn; do
        command -v "$program" >/dev/null || fail packages "$program is missing: run make deps"
    done
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

# A digest of everything supervisord and its programs read at start.
conf_digest() {
    cat "$SV_CONF" "$ROOT"/ops/supervisor/*.conf "$STATE"/conf/*.conf \
        "$STATE/conf/kafka-server.properties" "$STATE/conf/fibod.env" | sha256sum | cut -d' ' -f1
}

start_supervisord() {
    local digest stamp=$STATE/run/stack.sha256
    digest=$(conf_digest)
    if supervisord_running; then
        if [[ -f $stamp && $(cat "$stamp") == "$digest" ]]; then
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
    # The apps inherit supervisord's environment: leave the admin secrets out.
    local -a withhold=() name
    while read -r name; do withhold+=(-u "$name"); done < <("$PY" -m fibod.config --withheld)
    env "${withhold[@]}" "$SUPERVISORD" -c "$SV_CONF" ||
        fail supervisord "supervisord did not start" "$STATE/log/supervisord.log"
    echo "$digest" >"$stamp"
}

wait_redis() {
    local store=$1
    "$PY" scripts/health.py redis "$store" --wait-s "$FIBOD_UP_WAIT_S" ||
        fail "$store-redis" "no PONG within $FIBOD_UP_WAIT_S s" "$STATE/log/$store-redis.log" "$STATE/log/$store-redis.out.log"
}

wait_kafka() {
    "$PY" ops/kafka/create_topic.py --wait-s "$FIBOD_UP_WAIT_S" ||
        fail kafka "broker or topic not ready within $FIBOD_UP_WAIT_S s" "$STATE/log/kafka.out.log" "$STATE/log/kafka/server.log"
}

# Start the apps and wait until supervisor reports all of them RUNNING.
start_apps() {
    local -a programs=(worker:* submit fetch vip monitor)
    sv start "${programs[@]}" >/dev/null 2>&1 || true
    local deadline=$((SECONDS + FIBOD_UP_WAIT_S)) status bad
    while :; do
        status=$(sv status "${programs[@]}" 2>&1 || true)
        bad=$(awk '$2 != "RUNNING" {print $1 " " $2}' <<<"$status")
        [[ -z $bad ]] && return 0
        if grep -q ' FATAL' <<<"$bad" || ((SECONDS >= deadline)); then
            local name _state logs=()
            while read -r name _state; do
                logs+=("$STATE/log/${name#worker:}.log")
            done <<<"$bad"
            fail apps "not running: $(tr '\n' ';' <<<"$bad")" "${logs[@]}"
        fi
        sleep 1
    done
}

# Every /readyz answers 200 and the workers hold every task partition, so
# a task submitted right after `make up` is picked up at once.
wait_ready() {
    "$PY" scripts/health.py ready --wait-s "$FIBOD_UP_WAIT_S" ||
        fail ready "the stack did not become ready within $FIBOD_UP_WAIT_S s" \
            "$STATE/log/monitor.log" "$STATE/log/worker-0.log"
}

wait_http() {
    local -a allow=()
    [[ $FIBOD_UP_SKIP_APPS == 1 ]] && allow=(--allow-missing-apps)
    "$PY" scripts/health.py http --wait-s "$FIBOD_UP_WAIT_S" "${allow[@]}" ||
        fail nginx "routes do not answer as expected within $FIBOD_UP_WAIT_S s" \
            "$STATE/log/nginx-error.log" "$STATE/log/nginx.out.log" "$STATE/log/submit.log" "$STATE/log/fetch.log"
}

check_packages
check_java
ensure_venv
ops/kafka/fetch.sh || fail kafka "fetching the broker jars failed"
"$PY" scripts/render_conf.py || fail config "rendering the configs failed"
load_settings "$("$PY" scripts/render_conf.py --where)"
# Checked as the user it runs as: nginx -t as root would give its temp
# folders to `nobody`.
as_run_user nginx -q -t -p "$STATE/nginx/" -c "$STATE/conf/nginx.conf" -e "$STATE/log/nginx-error.log" ||
    fail config "nginx rejects $STATE/conf/nginx.conf (from ops/nginx.conf.in)"

start_supervisord
wait_redis task
wait_redis sequence
wait_kafka
if [[ $FIBOD_UP_SKIP_APPS == 1 ]]; then
    log "FIBOD_UP_SKIP_APPS=1: not starting worker, submit, fetch, vip, monitor"
    wait_http
else
    start_apps
    wait_http
    wait_ready
fi

sv status || true
log "stack is up in $((SECONDS - START_S)) s: $FIBOD_BASE_URL"
