#!/bin/bash
# API server benchmark: apiserver-lite on SQLite, apiserver-lite on etcd, and etcd alone
# (the floor), in one run, one after another, with the same workload (the driver is
# bench/apiserver, `krs-bench-apiserver`):
#   - N creates of a ~2 KB pod from C concurrent clients: creates/s, p50/p99 latency
#   - N gets from C clients; LISTS lists of all N pods; LISTS lists in pages of 500
#   - watch latency: a watch open, WATCH creates one at a time, the time from each create's
#     response (and from its request) to the watcher's ADDED event, p50/p99
#   - resident memory (VmRSS) of the server right after start, when its turn comes (at rest,
#     bootstrap objects only), with the N pods stored, and after the run and IDLE seconds
#     idle; and the peak (VmHWM). For apiserver-lite on etcd, etcd's memory beside it.
# The API server is reached over HTTPS with admin.kubeconfig's client certificate, through
# one HTTP/2 connection (as kubectl does); etcd through its gRPC client API.
#
# How to run (no root needed; loopback only):
#   bench/apiserver.sh
# Environment:
#   N=10000  pods created per target      C=16   concurrent clients for creates and gets
#   LISTS=5  timed lists (each kind)      WATCH=300  creates timed through a watch
#   IDLE=5   idle seconds before the last memory reading
#   BIN_DIR=D  where apiserver-lite and krs-bench-apiserver are; default: `cargo build
#              --release` them and use target/release
#   JSON=PATH  also write every figure and sample as JSON
#   KEEP=1     keep the work directory (logs, data) instead of removing it
#
# Everything lives in a temporary directory under /var/tmp (a disk, so fsyncs cost what
# they cost; not a tmpfs), removed at exit; the processes we start are stopped by pid at
# exit, also on failure or interrupt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
N=${N:-10000}
C=${C:-16}
LISTS=${LISTS:-5}
WATCH=${WATCH:-300}
IDLE=${IDLE:-5}
ETCD=/usr/bin/etcd

die() { echo "apiserver.sh: $*" >&2; exit 1; }

# ---- preflight --------------------------------------------------------------------------
missing=()
[ -x "$ETCD" ] || missing+=(etcd-server)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
[ ${#missing[@]} = 0 ] || die "missing tools; install them with: apt-get install -y ${missing[*]}"

if [ -n "${BIN_DIR-}" ]; then
    bin=$(realpath "$BIN_DIR")
else
    # Two builds: one would unify the driver's features (hyper's client, ...) into the
    # server's dependencies, and the server should be measured as it ships.
    (cd "$repo" && cargo build --release -q -p apiserver-lite && cargo build --release -q -p krs-bench-apiserver) || die "cargo build failed"
    bin=$repo/target/release
fi
for b in apiserver-lite krs-bench-apiserver; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing"
done

# ---- what we start, and its cleanup -----------------------------------------------------
work=$(mktemp -d /var/tmp/krs-bench-apiserver.XXXXXX)
pids=()
cleanup() {
    set +e
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [ "${KEEP-}" = 1 ]; then echo "apiserver.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until something accepts connections on 127.0.0.1:$1 (process $2 must stay alive).
wait_port() {
    for _ in $(seq 600); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# etcd on free loopback ports with its data under $work/$1; sets etcd_pid and etcd_url.
start_etcd() {
    local client peer
    client=$(free_port)
    peer=$(free_port)
    etcd_url=http://127.0.0.1:$client
    "$ETCD" --name "$1" --data-dir "$work/$1" \
        --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$1=http://127.0.0.1:$peer" --log-level warn \
        </dev/null >"$work/$1.log" 2>&1 &
    etcd_pid=$!
    pids+=("$etcd_pid")
    wait_port "$client" "$etcd_pid" || { tail -20 "$work/$1.log" >&2; die "etcd ($1) did not start"; }
}

# apiserver-lite with its data dir $work/$1 and the storage flags after; sets api_pid and
# api_kubeconfig. The API server alone, as etcd is alone: without the in-process controllers
# and scheduler (the garbage collector would delete the benchmark's pods, whose owner
# ReplicaSet does not exist, and the scheduler would try to bind them).
start_apiserver() {
    local name=$1 port
    shift
    port=$(free_port)
    "$bin/apiserver-lite" --data-dir "$work/$name" --listen "127.0.0.1:$port" \
        --controllers=false --scheduler=false "$@" \
        </dev/null >"$work/$name.log" 2>&1 &
    api_pid=$!
    pids+=("$api_pid")
    wait_port "$port" "$api_pid" || { tail -20 "$work/$name.log" >&2; die "apiserver-lite ($name) did not start"; }
    api_kubeconfig=$work/$name/admin.kubeconfig
    [ -s "$api_kubeconfig" ] || die "apiserver-lite ($name) wrote no $api_kubeconfig"
}

# ---- start ------------------------------------------------------------------------------
start_apiserver lite-sqlite
sqlite_pid=$api_pid sqlite_kc=$api_kubeconfig
start_etcd etcd-for-lite
lite_etcd_pid=$etcd_pid
start_apiserver lite-etcd --storage etcd --etcd-servers "$etcd_url"
etcd_api_pid=$api_pid etcd_kc=$api_kubeconfig
start_etcd etcd-floor
floor_pid=$etcd_pid floor_url=$etcd_url
sleep 2
echo "RSS 2 s after start (MiB): apiserver-lite on SQLite $(rss_mib "$sqlite_pid"), apiserver-lite on etcd $(rss_mib "$etcd_api_pid") (its etcd $(rss_mib "$lite_etcd_pid")), etcd alone $(rss_mib "$floor_pid")"

# ---- measure ----------------------------------------------------------------------------
commit=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "$(date -u +%F) commit $commit, $(uname -sr), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $("$ETCD" --version | head -1)"
status=0
"$bin/krs-bench-apiserver" --creates "$N" --concurrency "$C" --lists "$LISTS" --watch-events "$WATCH" --idle-secs "$IDLE" ${JSON:+--json "$JSON"} \
    --target "apiserver-lite, SQLite=apiserver=$sqlite_kc=$sqlite_pid" \
    --target "apiserver-lite, etcd=apiserver=$etcd_kc=$etcd_api_pid,$lite_etcd_pid" \
    --target "etcd alone (floor)=etcd=$floor_url=$floor_pid" || status=$?
if [ $status != 0 ]; then
    for log in "$work"/*.log; do echo "--- $log (tail)" >&2; tail -20 "$log" >&2; done
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
