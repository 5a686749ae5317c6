#!/usr/bin/env bash
# Show the state of the fibod stack (make status): each supervised program,
# then a one-line health check per part. Exits 0 only if all are healthy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VAR=$ROOT/var
PY=$ROOT/.venv/bin/python
SV_CONF=$VAR/conf/supervisord.conf
SV_PIDFILE=$VAR/run/supervisord.pid

state=
if [[ -s $SV_PIDFILE ]]; then
    state=$(ps -o stat= -p "$(cat "$SV_PIDFILE")" 2>/dev/null) || state=
fi
# A zombie (Z) is a supervisord that was killed and not yet reaped.
if [[ -z $state || $state == Z* ]]; then
    echo "supervisord: not running (make up)"
    exit 3
fi
echo "supervisord: running (pid $(cat "$SV_PIDFILE")), logs in var/log/"
"$ROOT/.venv/bin/supervisorctl" -c "$SV_CONF" status || true
echo

healthy=0
"$PY" scripts/health.py redis task || healthy=1
"$PY" scripts/health.py redis sequence || healthy=1
set -a
# shellcheck source=/dev/null
source "$VAR/conf/fibod.env"
set +a
if kafka=$("$PY" ops/kafka/create_topic.py --check --wait-s 5 2>&1); then
    echo "ok    ${kafka#kafka: }"
else
    echo "FAIL  ${kafka#kafka: }"
    healthy=1
fi
"$PY" scripts/health.py http || healthy=1
exit "$healthy"
