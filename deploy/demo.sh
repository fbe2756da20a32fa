#!/usr/bin/env bash
# Builds rswarm and runs a local cluster: 3 managers and 2 workers, each a node
# of its own with its own data dir under a temporary directory and its own
# network namespace on a private segment (a bridge in a hub namespace,
# 10.77.0.0/24: m1 .1 ... w2 .5, a client .100), as separate hosts would be.
# It imports a demo image, creates a service of 3 replicas running as
# containers with a published port, shows the cluster, the tasks and their
# logs, and sends requests to the port on every node from the client namespace.
# Nothing changes in the host's own network namespace. Needs root, iproute2 and
# util-linux.
# Everything it started is stopped and removed when it exits (also on Ctrl-C).
#   DEMO_KEEP=1 deploy/demo.sh   keeps the cluster running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "deploy/demo.sh runs containers (namespaces, cgroups, overlayfs): run it as root" >&2
    exit 1
fi

if ! command -v ip >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1; then
    echo "deploy/demo.sh needs iproute2 (ip) and util-linux (nsenter) for the nodes' namespaces" >&2
    exit 1
fi

cargo build --release -p rswarm -p rswarm-agent-runtime --bins
bin="$PWD/target/release/rswarm"
testimg="$PWD/target/release/rswarm-testimg"
work=$(mktemp -d /tmp/rswarm-demo.XXXXXX)
ns_prefix="rsdemo$$"
hub="$ns_prefix-hub"
pids=()
namespaces=()
cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        # The work directory goes away below: show what the nodes logged.
        for log in "$work"/*.log; do
            [ -f "$log" ] || continue
            echo "---- last lines of $(basename "$log")" >&2
            tail -n 20 "$log" >&2
        done
    fi
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
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

rs() { "$bin" --host "unix://$work/m1/rswarm.sock" "$@"; }
wait_for() { # wait_for DESCRIPTION COMMAND...: polls for up to 15 s
    local what=$1; shift
    for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "timed out waiting for $what" >&2
    return 1
}
attach() { # attach NAME HOST: namespace $ns_prefix-NAME with eth0 at 10.77.0.HOST on the hub
    local ns="$ns_prefix-$1" link="v$2"
    ip netns add "$ns"
    namespaces+=("$ns")
    ip -n "$ns" link set lo up
    ip -n "$hub" link add "$link" type veth peer name eth0 netns "$ns"
    ip -n "$hub" link set "$link" master br0
    ip -n "$hub" link set "$link" up
    ip -n "$ns" addr add "10.77.0.$2/24" dev eth0
    ip -n "$ns" link set eth0 up
}
start() { # start NAME HOST ARGS...: a node daemon in its namespace, logging to its dir
    local name=$1 host=$2; shift 2
    attach "$name" "$host"
    mkdir -p "$work/$name"
    # nsenter enters only the network namespace: `ip netns exec` would also
    # mount a fresh /sys, hiding the cgroup hierarchies the runtime needs.
    nsenter --net="/run/netns/$ns_prefix-$name" "$bin" "$@" --listen "10.77.0.$host:4242" \
        --hostname "$name" --data-dir "$work/$name" >"$work/$name.log" 2>&1 &
    pids+=($!)
}

echo "== a private segment: hub namespace $hub with bridge br0, 10.77.0.0/24"
ip netns add "$hub"
namespaces+=("$hub")
ip -n "$hub" link set lo up
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
attach client 100

echo "== starting manager m1 (rswarm init) at 10.77.0.1:4242"
start m1 1 init
wait_for "m1" rs cluster status
worker_token=$(rs join-token worker -q)
manager_token=$(rs join-token manager -q)

echo "== joining managers m2, m3 and workers w1, w2 (10.77.0.2-5)"
start m2 2 join --token "$manager_token" 10.77.0.1:4242
start m3 3 join --token "$manager_token" 10.77.0.1:4242
start w1 4 join --token "$worker_token" 10.77.0.1:4242
start w2 5 join --token "$worker_token" 10.77.0.1:4242
ready_nodes() { [ "$(rs node ls --format json | grep -c '"status": "ready"')" = 5 ]; }
wait_for "5 ready nodes" ready_nodes

echo "== building the demo image from rswarm-testimg (a root filesystem tarball)"
img="$work/image"
mkdir -p "$img/bin" "$img/etc" "$img/tmp" "$img/proc" "$img/sys" "$img/dev"
cp "$testimg" "$img/bin/testimg"
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
echo "== requests to the published port 8080 of every node, from the client namespace"
# Each answer is the hostname (SERVICE.SLOT) of the task that served it: every
# node's proxy balances over all three tasks, wherever they run. A task that
# has just started may refuse a first connect before it listens: the proxy then
# leaves it out for 3 s (the client is retried on another task), so give the
# newest tasks that long first.
sleep 4
for host in 1 2 3 4 5; do
    ip netns exec "$ns_prefix-client" "$testimg" get 10.77.0.$host:8080 10.77.0.$host:8080 \
        10.77.0.$host:8080
done
echo
echo "The three tasks run as containers (own pid, mount, uts, ipc and network namespaces,"
echo "cgroups, an overlay root filesystem) on the nodes the scheduler chose; the image was"
echo "imported on m1 and fetched by the other nodes from the managers. Tasks on different"
echo "nodes reach each other over the VXLAN overlay; the published port is served by the"
echo "built-in proxy on every node, round-robin over every task of the service."
echo

if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "cluster running; control socket: unix://$work/m1/rswarm.sock, client namespace"
    echo "$ns_prefix-client (ip netns exec $ns_prefix-client ...) — Ctrl-C stops it"
    wait
fi
