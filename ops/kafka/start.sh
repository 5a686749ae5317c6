#!/usr/bin/env bash
# Run this host's Kafka node in the foreground (supervisor's child).
#
# Formats the KRaft storage on first start with a cluster id kept in
# <state dir>/kafka/cluster.id (FIBOD_KAFKA_CLUSTER_ID when several nodes
# share one), then execs java so supervisor signals the JVM itself.
# FIBOD_STATE_DIR and FIBOD_KAFKA_HEAP come from the effective settings in
# the environment (supervisord passes them on).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
var=${FIBOD_STATE_DIR:?FIBOD_STATE_DIR is not set: start the stack with make up}
heap=${FIBOD_KAFKA_HEAP:?FIBOD_KAFKA_HEAP is not set: start the stack with make up}
lib=$root/ops/kafka/lib
conf=$var/conf/kafka-server.properties
data=$var/kafka/data
idfile=$var/kafka/cluster.id
logdir=$var/log/kafka
tmp=$var/tmp/kafka

if [[ ! -f $lib/.complete ]]; then
    echo "kafka: no jars in $lib; run ops/kafka/fetch.sh" >&2
    exit 1
fi
if [[ ! -f $conf ]]; then
    echo "kafka: $conf missing; run scripts/render_conf.py" >&2
    exit 1
fi
mkdir -p "$data" "$logdir" "$tmp"

# Native compression libraries unpack into a temp dir; /tmp may be noexec.
jvm_props=(
    -Djava.awt.headless=true
    -Djava.io.tmpdir="$tmp"
    -Dorg.xerial.snappy.tempdir="$tmp"
    -DZstdTempFolder="$tmp"
    -Dkafka.logs.dir="$logdir"
    -Dlog4j2.configurationFile="$root/ops/kafka/log4j2.properties"
)
classpath="$lib/*"

# Several nodes share the id the renderer generated (FIBOD_KAFKA_CLUSTER_ID).
# Alone, a formatted data dir keeps its cluster id; reusing it avoids
# "Invalid cluster.id" when var/kafka/cluster.id was lost.
if [[ -n ${FIBOD_KAFKA_CLUSTER_ID:-} ]]; then
    echo "$FIBOD_KAFKA_CLUSTER_ID" >"$idfile"
elif [[ -f $data/meta.properties ]]; then
    sed -n 's/^cluster\.id=//p' "$data/meta.properties" >"$idfile"
fi
if [[ ! -s $idfile ]]; then
    java "${jvm_props[@]}" -cp "$classpath" kafka.tools.StorageTool random-uuid >"$idfile.tmp"
    mv "$idfile.tmp" "$idfile"
fi
# The users (SCRAM credentials) are made when the storage is formatted, from
# <state dir>/conf/kafka-users.args (mode 600: the passwords never pass
# through the environment). A data dir formatted before logins existed has
# none, and nobody could log in: say so rather than start.
users=$var/conf/kafka-users.args
mapfile -t scram <"$users"
if [[ -f $data/meta.properties && ! -f $var/kafka/users.made ]]; then
    echo "kafka: $data was formatted without users (an older fibod); stop the stack," \
        "remove $var/kafka (queued tasks are lost) and start it again" >&2
    exit 1
fi
java "${jvm_props[@]}" -cp "$classpath" kafka.tools.StorageTool format \
    -t "$(cat "$idfile")" -c "$conf" --ignore-formatted "${scram[@]}"
touch "$var/kafka/users.made"

exec java -Xms"$heap" -Xmx"$heap" -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    "${jvm_props[@]}" -cp "$classpath" kafka.Kafka "$conf"
