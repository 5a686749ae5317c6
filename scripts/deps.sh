#!/usr/bin/env bash
# Install the Debian packages the stack needs (make deps).
#
# Installs only what is missing, as root or through sudo. While it
# installs, a temporary policy-rc.d keeps the new packages from starting
# Debian's own redis (6379) and nginx (80) services; under systemd the
# units of packages installed HERE are then disabled at boot, and nothing
# else: a service that was on this machine before is left as it was.
set -euo pipefail
SCRIPT_NAME=deps
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# package -> the program whose absence means the package is needed
declare -A NEEDS=(
    [redis-server]=/usr/bin/redis-server
    [nginx]=/usr/sbin/nginx
    [util-linux]=taskset
    [procps]=pgrep
    [iproute2]=ip
    [wrk]=wrk
    # download tools the tests use on results (ranges, resume), and the
    # shell whose completion script `fibod completion zsh` is tested in
    [curl]=curl
    [aria2]=aria2c
    [zsh]=zsh
    [openjdk-17-jre-headless]=java
    [maven]=mvn
    # promtool: the tests check the scrape config, the alert rules and real scrapes
    [prometheus]=/usr/bin/promtool
    # the dashboard's browser test: headless Chromium driven through its driver
    [chromium]=/usr/bin/chromium
    [chromium-driver]=/usr/bin/chromedriver
    # rotates the logs nginx and Redis write themselves (ops/logrotate.conf.in)
    [logrotate]=/usr/sbin/logrotate
    # the .venv's Python (Makefile): Debian's, which the run user may execute
    [python3]=/usr/bin/python3
    [python3-dev]=/usr/bin/python3-config
)
# package -> the systemd unit it ships and enables
declare -A UNITS=([redis-server]=redis-server [nginx]=nginx [prometheus]=prometheus)

missing=()
for package in "${!NEEDS[@]}"; do
    program=${NEEDS[$package]}
    if [[ $program == /* ]]; then
        [[ -x $program ]] || missing+=("$package")
    else
        command -v "$program" >/dev/null || missing+=("$package")
    fi
done
# python3-venv ships no program: Debian's python3 then lacks ensurepip.
if ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi
if ((${#missing[@]} == 0)); then
    log "Debian packages present"
    exit 0
fi

log "installing Debian packages: ${missing[*]}"
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    made_policy=1
fi
rc=0
as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=120 update || rc=$?
if ((rc == 0)); then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null || rc=$?
fi
if ((made_policy)); then
    as_root rm -f "$policy"
fi
((rc == 0)) || fail packages "apt-get failed (exit $rc) installing ${missing[*]}"
if [[ -d /run/systemd/system ]]; then
    for package in "${missing[@]}"; do
        unit=${UNITS[$package]:-}
        [[ -n $unit ]] && as_root systemctl disable "$unit" >/dev/null 2>&1 || true
    done
fi
log "installed: ${missing[*]}"
