#!/usr/bin/env bash
# Rotate the logs nginx and Redis write themselves, for every stack of this
# checkout that was rendered: the one-machine stack (var/conf/) and each
# rehearsal or cluster host (var/cluster/<host>/conf/). Each keeps its
# logrotate state beside its other run files. Run hourly by
# ops/systemd/fibod-logrotate.timer; `-f` as first argument forces a
# rotation now (the tests do).
set -euo pipefail
SCRIPT_NAME=rotate
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

shopt -s nullglob
status=0
for conf in "$ROOT"/var/conf/logrotate.conf "$ROOT"/var/cluster/*/conf/logrotate.conf; do
    state_dir=$(dirname "$(dirname "$conf")")
    mkdir -p "$state_dir/run"
    logrotate "$@" --state "$state_dir/run/logrotate.state" "$conf" || {
        log "logrotate failed for $conf" >&2
        status=1
    }
done
exit "$status"
