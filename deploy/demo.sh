#!/usr/bin/env bash
# Builds rswarm and runs a local cluster: 3 managers and 2 workers on loopback
# (127.0.0.1:24242-24246), each with its own data dir under a temporary directory,
# then creates a demo service with 3 replicas and shows the cluster's state and its
# tasks.
# Everything it started is stopped and removed when it exits (also on Ctrl-C).
#   DEMO_KEEP=1 deploy/demo.sh   keeps the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p rswarm -p rswarm-agent-runtime --bins
bin="$PWD/target/release/rswarm"
work=$(mktemp -d /tmp/rswarm-demo.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

rs() { "$bin" --host "unix://$work/m1/rswarm.sock" "$@"; }
wait_for() { # wait_for DESCRIPTION COMMAND...: polls for up to 15 s
    local what=$1; shift
    for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "timed out waiting for $what; logs are in $work" >&2
    return 1
}
start() { # start NAME ARGS...: a node daemon in the background, logging to its dir
    local name=$1; shift
    mkdir -p "$work/$name"
    "$bin" "$@" --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
    pids+=($!)
}

echo "== starting manager m1 (rswarm init)"
start m1 init --listen 127.0.0.1:24242 --hostname m1
wait_for "m1" rs cluster status
worker_token=$(rs join-token worker -q)
manager_token=$(rs join-token manager -q)

echo "== joining managers m2, m3 and workers w1, w2"
start m2 join --token "$manager_token" --listen 127.0.0.1:24243 --hostname m2 127.0.0.1:24242
start m3 join --token "$manager_token" --listen 127.0.0.1:24244 --hostname m3 127.0.0.1:24242
start w1 join --token "$worker_token" --listen 127.0.0.1:24245 --hostname w1 127.0.0.1:24242
start w2 join --token "$worker_token" --listen 127.0.0.1:24246 --hostname w2 127.0.0.1:24242
ready_nodes() { [ "$(rs node ls --format json | grep -c '"status": "ready"')" = 5 ]; }
wait_for "5 ready nodes" ready_nodes

echo "== rswarm service create --name demo --replicas 3 --publish 8080:80 demo-web"
rs service create --name demo --replicas 3 --publish 8080:80 --detach demo-web
echo
rs cluster status
echo
rs node ls
echo
sleep 2
rs service ls
echo
rs service ps demo
echo
echo "The managers created and placed the tasks; the nodes refuse them because this build"
echo "has no container runtime yet (tasks are REJECTED with that reason and retried with"
echo "back-off). The load-balancing proxy on :8080 is not built yet either."

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "cluster running; control socket: unix://$work/m1/rswarm.sock — Ctrl-C stops it"
    wait
fi
