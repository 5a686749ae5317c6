#!/bin/sh
# Start node N of the sequence store's Redis Cluster (run by
# ops/supervisor/cluster/sequence-node.conf).
#
# The store keeps no files (a cache), so a master that supervisor restarted
# before its replica took over would come back empty, still the master, and
# its replica would copy the emptiness. A node that was a master with slots
# when it stopped therefore waits twice the cluster's node timeout first:
# by then its replica is the master, and the node rejoins as its replica.
#
# usage: sequence-node-start.sh <state dir> <node index> <node timeout ms>
set -eu
state=$1
index=$2
timeout_ms=$3
nodes="$state/redis/sequence-node-$index/nodes.conf"
if [ -f "$nodes" ] && awk '$3 ~ /myself/ && $3 ~ /master/ && NF > 8 {found = 1} END {exit !found}' "$nodes"; then
    wait_s=$(( (2 * timeout_ms + 999) / 1000 ))
    echo "sequence-node-$index: was a master with slots; waiting ${wait_s} s for its replica to take over"
    sleep "$wait_s"
fi
exec redis-server "$state/conf/sequence-node-$index.conf"
