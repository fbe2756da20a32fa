#!/usr/bin/env bash
# Builds rswarm and runs a local cluster: 3 managers and 2 workers on loopback
# (127.0.0.1:24242-24246), each with its own data dir under a temporary directory,
# then imports a demo image, creates a service of 3 replicas running as containers,
# and shows the cluster, the tasks and their logs. Needs root.
# Everything it started is stopped and removed when it exits (also on Ctrl-C).
#   DEMO_KEEP=1 deploy/demo.sh   keeps the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "deploy/demo.sh runs containers (namespaces, cgroups, overlayfs): run it as root" >&2
    exit 1
fi

cargo build --release -p rswarm -p rswarm-agent-runtime --bins
bin="$PWD/target/release/rswarm"
work=$(mktemp -d /tmp/rswarm-demo.XXXXXX)
pids=()
cleanup() {
    # Containers outlive their node daemon (a restarted daemon re-adopts them):
    # remove the service first, then kill whatever a failed run left in its cgroups.
    if [ -S "$work/m1/rswarm.sock" ]; then
        "$bin" --host "unix://$work/m1/rswarm.sock" service rm demo >/dev/null 2>&1 || true
        for _ in $(seq 100); do
            [ -z "$(find "$work" -mindepth 4 -maxdepth 4 -path '*/runtime/containers/*' | head -1)" ] && break
            sleep 0.1
        done
    fi
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for c in "$work"/*/runtime/containers/*/; do
        [ -d "$c" ] || continue
        id=$(basename "$c")
        for procs in /sys/fs/cgroup/*/rswarm/"$id"/cgroup.procs /sys/fs/cgroup/rswarm/"$id"/cgroup.procs; do
            [ -f "$procs" ] && xargs -r kill -9 <"$procs" 2>/dev/null
        done
        sleep 0.2
        for dir in /sys/fs/cgroup/*/rswarm/"$id" /sys/fs/cgroup/rswarm/"$id"; do
            [ -d "$dir" ] && rmdir "$dir" 2>/dev/null
        done
    done
    for ns in "$work"/*/runtime/netns/*; do
        [ -e "$ns" ] && { umount -l "$ns" 2>/dev/null; rm -f "$ns"; }
    done
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

echo "== building the demo image from rswarm-testimg (a root filesystem tarball)"
img="$work/image"
mkdir -p "$img/bin" "$img/etc" "$img/tmp" "$img/proc" "$img/sys" "$img/dev"
cp "$PWD/target/release/rswarm-testimg" "$img/bin/testimg"
for lib in $(ldd "$img/bin/testimg" | grep -o '/[^ ]*'); do
    mkdir -p "$img$(dirname "$lib")"
    cp -L "$lib" "$img$lib"
done
tar -C "$img" -cf "$work/demo-web.tar" .
rs image import --name demo-web:1 "$work/demo-web.tar"
echo
echo "== rswarm service create --name demo --replicas 3 --publish 8080:80 demo-web:1 /bin/testimg serve 80"
rs service create --name demo --replicas 3 --publish 8080:80 demo-web:1 /bin/testimg serve 80
echo
rs cluster status
echo
rs node ls
echo
rs image ls
echo
rs service ls
echo
rs service ps demo
echo
echo "== rswarm service logs demo"
rs service logs demo
echo
echo "== six requests to the published port 127.0.0.1:8080, through the node proxy"
# The nodes share this host's network namespace here, so one node's proxy holds
# the port; each answer is the hostname (SERVICE.SLOT) of the task that served it.
# A task that has just started may refuse a first connect before it listens: the
# proxy then leaves it out for 3 s (the client is retried on another task), so
# give the newest tasks that long first.
sleep 4
"$PWD/target/release/rswarm-testimg" get 127.0.0.1:8080 127.0.0.1:8080 127.0.0.1:8080 \
    127.0.0.1:8080 127.0.0.1:8080 127.0.0.1:8080
echo
echo "The three tasks run as containers (own pid, mount, uts, ipc and network namespaces,"
echo "cgroups, an overlay root filesystem) on the nodes the scheduler chose; the image was"
echo "imported on m1 and fetched by the other nodes from the managers. The published port"
echo "is served by the built-in proxy. In this one-host demo the five nodes share the host's"
echo "network namespace and their task networks get in each other's way, so the proxy may"
echo "reach only some tasks (it leaves out those it cannot connect to); with one namespace"
echo "per node, as in the e2e tests, requests are balanced over every task."

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "cluster running; control socket: unix://$work/m1/rswarm.sock — Ctrl-C stops it"
    wait
fi
