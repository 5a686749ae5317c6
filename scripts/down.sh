#!/usr/bin/env bash
# Stop the fibod stack (make down): supervisord and every program it runs.
#
# Asks supervisord to shut down (programs stop in reverse priority order,
# each with its stopsignal and stopwaitsecs), waits for it to exit, then
# waits until no port of the stack is in use. If supervisord is gone but
# programs it started survived (it was killed), those are stopped by pid.
# Data under the state dir (var/) is kept.
set -euo pipefail
SCRIPT_NAME=down
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -x $PY ]]; then
    log "no .venv: nothing of the stack can be running"
    exit 0
fi
effective=$("$PY" "$ROOT/scripts/render_conf.py" --where)
if [[ ! -f $effective ]]; then
    log "no effective settings ($effective): the stack never started here"
    exit 0
fi
load_settings "$effective"

# Pids of programs this stack's supervisord started: supervisord puts its
# socket's URL in each child's environment, and their children inherit it.
stack_pids() {
    local marker="SUPERVISOR_SERVER_URL=unix://$STATE/run/supervisor.sock" environ pid
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        grep -qzxF "$marker" "$environ" 2>/dev/null && echo "$pid"
    done
}

if supervisord_running; then
    pid=$(cat "$SV_PIDFILE")
    log "stopping supervisord (pid $pid) and its programs"
    sv shutdown >/dev/null || true
    if ! wait_gone "$FIBOD_DOWN_WAIT_S" "$pid"; then
        log "supervisord still running after $FIBOD_DOWN_WAIT_S s; see $STATE/log/supervisord.log" >&2
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
rm -f "$STATE/run/stack.sha256"

if ! "$PY" "$ROOT/scripts/health.py" ports-free --wait-s 30; then
    log "a port is still in use by a program outside the stack" >&2
    exit 1
fi
log "stack stopped"
