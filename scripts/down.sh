#!/usr/bin/env bash
# Stop the fibod stack (make down): supervisord and every program it runs.
#
# Asks supervisord to shut down (programs stop in reverse priority order,
# each with its stopsignal and stopwaitsecs), waits for it to exit, then
# waits until no port of the stack is in use. If supervisord is gone but
# programs it started survived (it was killed), those are stopped by pid.
# Data under var/ is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=$ROOT/var
PY=$ROOT/.venv/bin/python
SV_CONF=$VAR/conf/supervisord.conf
SV_PIDFILE=$VAR/run/supervisord.pid
#: Longest wait for supervisord to stop all programs (Redis may flush GBs).
STOP_WAIT_S=${FIBOD_DOWN_WAIT_S:-180}

log() { printf 'down: %s\n' "$*"; }

# Pids of programs this stack started, found by their command lines.
stack_pids() {
    pgrep -f -- "$VAR/conf/|--worker-tmp-dir $VAR/tmp --name fibod-|$ROOT/.venv/bin/python -m fibod\.worker" || true
}

# True if the pid runs (a zombie left by a killed daemon does not count).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

wait_gone() {
    local deadline=$((SECONDS + $1)) pid
    shift
    for pid in "$@"; do
        while alive "$pid"; do
            ((SECONDS < deadline)) || return 1
            sleep 0.5
        done
    done
}

if [[ -s $SV_PIDFILE ]] && alive "$(cat "$SV_PIDFILE")" &&
    [[ $(ps -o args= -p "$(cat "$SV_PIDFILE")") == *supervisord* ]]; then
    pid=$(cat "$SV_PIDFILE")
    log "stopping supervisord (pid $pid) and its programs"
    "$ROOT/.venv/bin/supervisorctl" -c "$SV_CONF" shutdown >/dev/null || true
    if ! wait_gone "$STOP_WAIT_S" "$pid"; then
        log "supervisord still running after $STOP_WAIT_S s; see $VAR/log/supervisord.log" >&2
        exit 1
    fi
else
    log "supervisord is not running"
fi

mapfile -t orphans < <(stack_pids)
if ((${#orphans[@]})); then
    log "stopping leftover programs of the stack: ${orphans[*]}"
    kill -TERM "${orphans[@]}" 2>/dev/null || true
    if ! wait_gone 30 "${orphans[@]}"; then
        kill -KILL "${orphans[@]}" 2>/dev/null || true
        wait_gone 5 "${orphans[@]}" || true
    fi
fi
rm -f "$VAR/run/stack.sha256"

if [[ -f $VAR/conf/fibod.env ]]; then
    if ! "$PY" "$ROOT/scripts/health.py" ports-free --wait-s 30; then
        log "a port is still in use by a program outside the stack" >&2
        exit 1
    fi
fi
log "stack stopped"
