#!/bin/bash
# Service proxy benchmark: the nftables and iptables backends of the proxy, side by side in
# one run (the driver is bench/proxy, `krs-bench-proxy`):
#   - time to program N services with E endpoints each (default 1,000 and 10,000, E=5): a
#     fresh backend's first sync (everything) and a one-service change (one service's
#     endpoints changed, synced again); median of RUNS runs
#   - first-packet latency to a service at 10 and 10,000 services: p50/p99 connect() time of
#     CONNECTIONS new TCP connections from the node to the last service in the ruleset (the
#     last rule iptables' linear walk reaches), served by a real server in a pod namespace
# Duration: about 10 minutes with the defaults, most of it the iptables backend's full syncs
# of 10,000 services (iptables-nft 1.8.9's `iptables-restore --noflush` costs about chains x
# rules within one transaction: ~140 s for 60,000 chains on 2 CPUs; RUNS=1 shortens it).
# Everything happens in network namespaces the driver makes (krs-bp<pid>-*) and deletes;
# the host's own rules are never touched.
#
# How to run (root):
#   bench/proxy.sh
# Environment:
#   BACKENDS=nftables,iptables   PROGRAM=1000,10000   LATENCY=10,10000
#   ENDPOINTS=5   RUNS=3   CONNECTIONS=2000
#   BIN_DIR=D  where krs-bench-proxy is; default: `cargo build --release` it, target/release
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "proxy.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it makes network namespaces and rules in them): sudo $0"
missing=()
for tool in ip nft iptables iptables-restore iptables-save sysctl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} = 0 ] || die "missing tools: ${missing[*]} (apt-get install -y iproute2 nftables iptables procps)"

if [ -n "${BIN_DIR-}" ]; then
    bin=$(realpath "$BIN_DIR")
else
    (cd "$repo" && cargo build --release -q -p krs-bench-proxy) || die "cargo build failed"
    bin=$repo/target/release
fi
[ -x "$bin/krs-bench-proxy" ] || die "$bin/krs-bench-proxy is missing"

echo "kernel $(uname -r), $(iptables -V), $(nft -v), $(nproc) CPUs"
echo
exec "$bin/krs-bench-proxy" \
    --backends "${BACKENDS:-nftables,iptables}" \
    --program "${PROGRAM:-1000,10000}" \
    --latency "${LATENCY:-10,10000}" \
    --endpoints "${ENDPOINTS:-5}" \
    --runs "${RUNS:-3}" \
    --connections "${CONNECTIONS:-2000}"
