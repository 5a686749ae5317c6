#!/usr/bin/env bash
# Show the state of the fibod stack (make status): each supervised program,
# then a one-line health check per part, and readiness (every /readyz, the
# worker group holding every partition). Exits 0 only if all are healthy.
set -euo pipefail
SCRIPT_NAME=status
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if [[ ! -x $PY ]]; then
    echo "supervisord: not running (no .venv: make up)"
    exit 3
fi
effective=$("$PY" scripts/render_conf.py --where)
if [[ ! -f $effective ]]; then
    echo "supervisord: not running (never started: make up)"
    exit 3
fi
load_settings "$effective"
if ! supervisord_running; then
    echo "supervisord: not running (make up)"
    exit 3
fi
echo "supervisord: running (pid $(cat "$SV_PIDFILE")), logs in $STATE/log/"
sv status || true
echo

healthy=0
"$PY" scripts/health.py redis task || healthy=1
"$PY" scripts/health.py redis sequence || healthy=1
if kafka=$("$PY" ops/kafka/create_topic.py --check --wait-s 5 2>&1); then
    echo "ok    ${kafka#kafka: }"
else
    echo "FAIL  ${kafka#kafka: }"
    healthy=1
fi
"$PY" scripts/health.py http || healthy=1
"$PY" scripts/health.py ready || healthy=1
exit "$healthy"
