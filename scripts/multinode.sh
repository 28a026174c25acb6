#!/bin/sh
# A cluster of several kubelet-rs nodes on one machine: a control plane (`kubelet-rs
# --apiserver`, itself a node) and N workers (`kubelet-rs --bootstrap-kubeconfig`, joining
# with a bootstrap token from `apiserver-lite token create`: each asks the control plane for
# its credentials and its serving certificate by CSR), each in a network namespace of its own with its own
# address on one bridge (192.168.78.10, .11, ...), its own data and state directories, cgroup
# and pod CIDR (10.244.<i>.0/24). kubelet-rs routes between the pod CIDRs itself (host-gw),
# exactly as it does for machines on one network: run the same two command lines on real
# machines (see README "Several nodes").
#
#   sudo scripts/multinode.sh up [--workers N] [--dir DIR] [--bin-dir DIR] [--no-host-link] [-- KUBELET-RS FLAGS...]
#   sudo scripts/multinode.sh stop-node NAME     # SIGTERM one node's kubelet-rs (its pods stay)
#   sudo scripts/multinode.sh start-node NAME    # start it again
#   sudo scripts/multinode.sh down [--dir DIR]   # stop every node, remove pods, namespaces, state
#
# Defaults: 2 workers, state in /var/lib/kubelet-rs-multinode, binaries next to this script's
# target/release (else target/debug). Names (`--prefix`, default krs-mn): netns
# `krs-mn-<node>` and `krs-mn-lan`, nodes `krs-cp`, `krs-worker<i>`, cgroups `krs-mn-<node>`
# under the cgroup v2 root. The admin
# kubeconfig is written to DIR/admin.kubeconfig; it names the control plane at 192.168.78.10,
# which the host reaches through a veth `krs-mn-host` (192.168.78.254) on the lan bridge
# (`--no-host-link`: no link on the host; reach the API from inside `krs-mn-krs-cp`).
# FLAGS after `--` go to every kubelet-rs (e.g. --insecure-registry 127.0.0.1:5000).
set -eu

LAN=192.168.78
LAN_GW=$LAN.1
CP_IP=$LAN.10
HOST_IP=$LAN.254
here=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "multinode.sh: $*" >&2; exit 1; }
say() { echo "multinode.sh: $*"; }

cmd=${1:-}
[ -n "$cmd" ] || die "usage: multinode.sh up|down|stop-node NAME|start-node NAME [--workers N] [--dir DIR] [--bin-dir DIR] [-- FLAGS]"
shift
node_arg=
case $cmd in stop-node|start-node) node_arg=${1:-}; [ -n "$node_arg" ] || die "$cmd needs a node name"; shift ;; esac
workers=2
prefix=krs-mn
host_link=yes
dir=/var/lib/kubelet-rs-multinode
bin=
while [ $# -gt 0 ]; do
    case $1 in
        --workers) workers=${2:?--workers needs a number}; shift 2 ;;
        --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
        --bin-dir) bin=${2:?--bin-dir needs a directory}; shift 2 ;;
        --no-host-link) host_link=no; shift ;;
        --prefix) prefix=${2:?--prefix needs a name}; shift 2 ;;
        --) shift; break ;;
        *) die "unknown option $1" ;;
    esac
done
case $workers in ''|*[!0-9]*) die "--workers: $workers is not a number" ;; esac
[ "$workers" -le 20 ] || die "--workers: at most 20"
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts, cgroups)"
if [ -z "$bin" ]; then
    for d in "$here/target/release" "$here/target/debug"; do
        [ -x "$d/kubelet-rs" ] && [ -x "$d/apiserver-lite" ] && { bin=$d; break; }
    done
    [ -n "$bin" ] || die "no kubelet-rs and apiserver-lite under target/release or target/debug: cargo build --release first (or --bin-dir DIR)"
fi
for b in kubelet-rs apiserver-lite runtime-rs krs-bridge krs-host-local krs-portmap; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing (cargo build --release builds it)"
done

# Later commands use the prefix `up` was given.
if [ "$cmd" != up ] && [ -f "$dir/prefix" ]; then prefix=$(cat "$dir/prefix"); fi
cg_root=/sys/fs/cgroup
[ -f $cg_root/cgroup.controllers ] || cg_root=/sys/fs/cgroup/unified
[ -f $cg_root/cgroup.controllers ] || die "no cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"

has_netns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
node_name() { if [ "$1" = 0 ]; then echo krs-cp; else echo "krs-worker$1"; fi; }
node_index() { case $1 in krs-cp) echo 0 ;; krs-worker*) echo "${1#krs-worker}" ;; *) die "no node $1 (krs-cp, krs-worker1, ...)" ;; esac; }

# The kubelet-rs command line of node i (what a machine of its own would run).
node_args() {
    i=$1; name=$(node_name "$i"); d=$dir/$name
    set -- --data-dir "$d/data" --state-dir "$d/state" --pod-log-dir "$d/logs" \
        --cgroup-root "/$prefix-$name" --hostname-override "$name" --node-ip "$LAN.$((10 + i))" \
        --pod-cidr "10.244.$i.0/24" --resolv-conf "$dir/resolv.conf"
    if [ "$i" = 0 ]; then
        set -- "$@" --apiserver --apiserver-listen 0.0.0.0:6443
    else
        set -- "$@" --bootstrap-kubeconfig "$dir/bootstrap.kubeconfig" --kubeconfig "$d/kubelet.kubeconfig" \
            --cluster-dns 10.96.0.10
    fi
    printf '%s\n' "$@"
}

start_node() {
    i=$1; name=$(node_name "$i"); d=$dir/$name
    if [ -f "$d/pid" ] && kill -0 "$(cat "$d/pid")" 2>/dev/null; then say "$name already runs"; return; fi
    mkdir -p "$d" "$cg_root/$prefix-$name"
    # One argument per line (paths have no newlines); extra flags from the up command line.
    node_args "$i" > "$d/args"
    [ -f "$dir/extra-args" ] && cat "$dir/extra-args" >> "$d/args"
    # shellcheck disable=SC2046
    # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup hierarchy.
    (IFS='
'; exec setsid nsenter --net="/run/netns/$prefix-$name" -- "$bin/kubelet-rs" $(cat "$d/args") >> "$d/kubelet-rs.log" 2>&1 < /dev/null) &
    echo $! > "$d/pid"
    say "$name started (pid $(cat "$d/pid"), log $d/kubelet-rs.log)"
}

stop_node() {
    name=$1; d=$dir/$name
    [ -f "$d/pid" ] || return 0
    pid=$(cat "$d/pid")
    if kill -TERM "$pid" 2>/dev/null; then
        n=0
        while kill -0 "$pid" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.1; n=$((n + 1)); done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$d/pid"
    say "$name stopped"
}

wait_file() {
    n=0
    while [ ! -s "$1" ]; do
        n=$((n + 1))
        [ $n -lt 600 ] || die "$2 did not start in 60 s (see its log)"
        sleep 0.1
    done
}

# The workers' bootstrap kubeconfig (a token the control plane knows, its CA), made through
# the control plane's API once it answers: what a user does on the control-plane machine
# before starting workers elsewhere.
bootstrap_token() {
    n=0
    until nsenter --net="/run/netns/$prefix-krs-cp" -- "$bin/apiserver-lite" token create \
        --data-dir "$dir/krs-cp/data/apiserver" --server "https://$CP_IP:6443" \
        --out "$dir/bootstrap.kubeconfig" --description "scripts/multinode.sh workers" > /dev/null 2> "$dir/token.err"; do
        n=$((n + 1))
        [ $n -lt 120 ] || die "no bootstrap token from the control plane in 60 s: $(cat "$dir/token.err")"
        sleep 0.5
    done
    say "workers join with the bootstrap token in $dir/bootstrap.kubeconfig"
}

up() {
    mkdir -p "$dir"
    : > "$dir/extra-args"
    for a in "$@"; do printf '%s\n' "$a" >> "$dir/extra-args"; done
    echo "$prefix" > "$dir/prefix"
    [ -f "$dir/resolv.conf" ] || grep '^nameserver' /etc/resolv.conf > "$dir/resolv.conf" || echo "nameserver $LAN_GW" > "$dir/resolv.conf"
    if ! has_netns "$prefix-lan"; then
        ip netns add "$prefix-lan"
        ip -n "$prefix-lan" link set lo up
        ip -n "$prefix-lan" link add br0 type bridge
        ip -n "$prefix-lan" addr add "$LAN_GW/24" dev br0
        ip -n "$prefix-lan" link set br0 up
    fi
    if [ $host_link = yes ] && ! ip link show krs-mn-host >/dev/null 2>&1; then
        # The host's own port on the lan: kubectl reaches the control plane at $CP_IP, and
        # the nodes reach the host's services at $HOST_IP (a registry listening only on
        # 127.0.0.1 is not reachable: listen on $HOST_IP too).
        ip link add krs-mn-host type veth peer name host netns "$prefix-lan"
        ip addr add "$HOST_IP/24" dev krs-mn-host
        ip link set krs-mn-host up
        ip -n "$prefix-lan" link set host master br0
        ip -n "$prefix-lan" link set host up
    fi
    i=0
    while [ $i -le "$workers" ]; do
        name=$(node_name $i)
        if ! has_netns "$prefix-$name"; then
            ip netns add "$prefix-$name"
            ip -n "$prefix-$name" link set lo up
            ip -n "$prefix-$name" link add eth0 type veth peer name "n$i" netns "$prefix-lan"
            ip -n "$prefix-$name" addr add "$LAN.$((10 + i))/24" dev eth0
            ip -n "$prefix-$name" link set eth0 up
            ip -n "$prefix-$name" route add default via "$LAN_GW"
            ip -n "$prefix-lan" link set "n$i" master br0
            ip -n "$prefix-lan" link set "n$i" up
        fi
        start_node $i
        if [ "$i" -eq 0 ]; then
            wait_file "$dir/krs-cp/data/admin.kubeconfig" krs-cp
            [ "$workers" -eq 0 ] || [ -s "$dir/bootstrap.kubeconfig" ] || bootstrap_token
        fi
        i=$((i + 1))
    done
    cp "$dir/krs-cp/data/admin.kubeconfig" "$dir/admin.kubeconfig"
    say "$((workers + 1)) nodes starting; kubectl --kubeconfig $dir/admin.kubeconfig get nodes -o wide"
}

down() {
    [ -d "$dir" ] || { say "nothing at $dir"; return; }
    for d in "$dir"/krs-*/; do
        [ -d "$d" ] || continue
        name=$(basename "$d")
        stop_node "$name"
        # What the node's pods left: their containers (runtime-rs state under the node's
        # state dir) and mounts.
        state="$d"state/oci
        if [ -d "$state" ]; then
            for c in $("$bin/runtime-rs" --root "$state" list -q 2>/dev/null); do
                "$bin/runtime-rs" --root "$state" delete --force "$c" >/dev/null 2>&1 || true
            done
        fi
        grep -o " ${d%/}[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        if [ -d "$cg_root/$prefix-$name" ]; then
            echo 1 > "$cg_root/$prefix-$name/cgroup.kill" 2>/dev/null || true
            find "$cg_root/$prefix-$name" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        fi
        ip netns delete "$prefix-$name" 2>/dev/null || true
    done
    ip link delete krs-mn-host 2>/dev/null || true
    ip netns delete "$prefix-lan" 2>/dev/null || true
    rm -rf "$dir"
    say "removed"
}

case $cmd in
    up) up "$@" ;;
    down) down ;;
    stop-node) node_index "$node_arg" >/dev/null; stop_node "$node_arg" ;;
    start-node) start_node "$(node_index "$node_arg")" ;;
    *) die "unknown command $cmd (up, down, stop-node, start-node)" ;;
esac
