#!/bin/bash
# CNI ADD+DEL latency: our chain (krs-bridge -> krs-host-local, then krs-portmap with one
# hostPort, ipMasq on) against Debian's reference plugins (containernetworking-plugins:
# bridge -> host-local, portmap) with the same configuration, driven the same way by
# bench/cni.py (every plugin run as a process with the CNI environment, as runtimes do).
#
# Everything happens in a network namespace of its own (`krs-bench-node-*`): the bridge, the
# masquerade and port-mapping rules never reach the host's. Prints a Markdown table: median
# and p90 milliseconds of the whole ADD chain and the whole DEL chain.
#
# Usage: sudo bench/cni.sh          (RUNS=N rounds per set, default 30)
# Needs: containernetworking-plugins nftables iptables iproute2 python3
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "cni.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces): sudo $0"
[ -x /usr/lib/cni/bridge ] || die "reference plugins missing: apt-get install -y containernetworking-plugins"
for t in nft iptables ip python3; do command -v "$t" >/dev/null || die "missing $t (apt-get install -y nftables iptables iproute2 python3)"; done

echo "cni.sh: building the plugins (release)" >&2
(cd "$repo" && cargo build --release --locked -p cni >&2)
ours=$repo/target/release
node=krs-bench-node-$$
ip netns add "$node"
trap 'ip netns delete "$node" 2>/dev/null || true' EXIT
ip netns exec "$node" ip link set lo up

out=$(ip netns exec "$node" python3 "$here/cni.py" --runs "${RUNS:-30}" \
    "krs (nftables)=$ours:krs-bridge:krs-host-local:krs-portmap" \
    "krs (iptables)=$ours:krs-bridge:krs-host-local:krs-portmap:{\"backend\":\"iptables\"}" \
    "reference 1.1.1 (iptables)=/usr/lib/cni:bridge:host-local:portmap")
python3 - "$out" <<'PY'
import json, statistics, sys
res = json.loads(sys.argv[1])
def p(v, q):
    v = sorted(v); return v[min(len(v) - 1, int(q * len(v)))]
print("| plugins | ADD median ms | ADD p90 ms | DEL median ms | DEL p90 ms | runs |")
print("|---|---|---|---|---|---|")
for name, r in res.items():
    print(f"| {name} | {statistics.median(r['add']):.1f} | {p(r['add'], 0.9):.1f} | {statistics.median(r['del']):.1f} | {p(r['del'], 0.9):.1f} | {len(r['add'])} |")
PY
