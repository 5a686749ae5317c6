# Helpers shared by scripts/up.sh, down.sh, status.sh and deps.sh (sourced).
#
# Defines ROOT, PY, SUPERVISORD, SUPERVISORCTL, SV_CONF and the functions
# below. Scripts set SCRIPT_NAME first; it prefixes every message.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
SUPERVISORD=$ROOT/.venv/bin/supervisord
SUPERVISORCTL=$ROOT/.venv/bin/supervisorctl
SV_CONF=$ROOT/supervisord.conf
# Debian keeps nginx and other daemons in sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf '%s: %s\n' "${SCRIPT_NAME:-fibod}" "$*"; }

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
    printf '%s: FAILED: %s: %s\n' "${SCRIPT_NAME:-fibod}" "$part" "$message" >&2
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

# Run a command as the programs' user (FIBOD_RUN_USER of the effective
# settings). setpriv, not runuser: no PAM session, so the limits stay
# supervisord's (runuser's pam_limits would lower open files to 1024).
as_run_user() {
    if ((EUID == 0)) && [[ ${FIBOD_RUN_USER:-root} != root ]]; then
        setpriv --reuid="$FIBOD_RUN_USER" --regid="$(id -g "$FIBOD_RUN_USER")" --init-groups -- "$@"
    else
        "$@"
    fi
}

# True if the pid runs (a zombie left by a killed daemon does not count).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# wait_gone SECONDS PID...: wait until every pid has exited; 1 on timeout.
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

# Export the effective settings (<state dir>/conf/fibod.env) into this shell.
load_settings() {
    local file=$1
    [[ -r $file ]] || fail config "no effective settings in $file (run make up)"
    set -a
    # shellcheck source=/dev/null
    source "$file"
    set +a
    STATE=$FIBOD_STATE_DIR
    SV_PIDFILE=$STATE/run/supervisord.pid
}

# True if supervisord of this state dir runs.
supervisord_running() {
    [[ -s $SV_PIDFILE ]] && alive "$(cat "$SV_PIDFILE")" &&
        [[ $(ps -o args= -p "$(cat "$SV_PIDFILE")") == *supervisord* ]]
}

sv() { "$SUPERVISORCTL" -c "$SV_CONF" -s "unix://$STATE/run/supervisor.sock" "$@"; }
