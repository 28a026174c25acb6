#!/bin/bash
# Pull + unpack benchmark: kubelet-rs image pull, skopeo copy + umoci unpack, and containerd's
# ctr pull, side by side in one run, of the ~100 MB four-layer `big` test image
# (scripts/build-test-images.sh) from Debian's docker-registry on 127.0.0.1.
#
# Each tool starts from an empty store every round (rounds interleaved); the registry and the
# image stay. Prints a Markdown table: median seconds (min-max) and MB/s of the compressed
# image size. containerd runs as a daemon of its own (temp root, state and socket; its CRI
# plugin disabled), is timed for `ctr images pull` (which unpacks into its overlayfs
# snapshotter) and is stopped by PID at the end.
#
# Usage: sudo bench/pull.sh            (RUNS=N rounds, default 5)
# Needs: docker-registry skopeo umoci containerd python3 zstd (it says what is missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "pull.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (unpacking keeps ownership; containerd mounts): sudo $0"
missing=()
for t in docker-registry:docker-registry skopeo:skopeo umoci:umoci containerd:containerd ctr:containerd python3:python3 zstd:zstd; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
[ ${#missing[@]} = 0 ] || die "missing tools; install them with: apt-get install -y ${missing[*]}"

work=$(mktemp -d /tmp/krs-bench-pull.XXXXXX)
reg_pid= ctd_pid=
cleanup() {
    set +e
    [ -n "$ctd_pid" ] && kill "$ctd_pid" 2>/dev/null && wait "$ctd_pid" 2>/dev/null
    [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
    # containerd's snapshot mounts, if any survived it.
    grep -o "$work[^ ]*" /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "pull.sh: building kubelet-rs (release) and the test images" >&2
(cd "$repo" && cargo build --release --locked -p kubelet-rs >&2)
krs=$repo/target/release/kubelet-rs
"$repo/scripts/build-test-images.sh" "$work/images" >&2
layout=$work/images/big

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $host
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('http://$host/v2/')" 2>/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$layout:latest" "docker://$host/big:latest"
size=$(python3 - "$layout" <<'EOF'
import json, sys, os
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
m = idx["manifests"][0]["digest"].split(":")[1]
man = json.load(open(os.path.join(d, "blobs/sha256", m)))
print(sum(l["size"] for l in man["layers"]) + man["config"]["size"])
EOF
)

mkdir -p "$work/ctd"
cat >"$work/ctd/config.toml" <<EOF
version = 2
root = "$work/ctd/root"
state = "$work/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/ctd/sock"
EOF
containerd --config "$work/ctd/config.toml" >"$work/ctd/log" 2>&1 &
ctd_pid=$!
for _ in $(seq 100); do ctr --address "$work/ctd/sock" version >/dev/null 2>&1 && break; sleep 0.1; done

now() { date +%s.%N; }
declare -A samples
round() {
    local r=$1 t0 t1
    rm -rf "$work/krs"; t0=$(now)
    "$krs" image --root "$work/krs" pull "$host/big:latest" >/dev/null
    t1=$(now); samples[kubelet-rs]+="$(echo "$t1 - $t0" | bc) "

    rm -rf "$work/oci" "$work/bundle"; t0=$(now)
    skopeo copy -q --src-tls-verify=false "docker://$host/big:latest" "oci:$work/oci:latest"
    umoci unpack --image "$work/oci:latest" "$work/bundle" >/dev/null
    t1=$(now); samples[skopeo+umoci]+="$(echo "$t1 - $t0" | bc) "

    ctr --address "$work/ctd/sock" images rm --sync "$host/big:latest" >/dev/null 2>&1 || true
    ctr --address "$work/ctd/sock" content prune references >/dev/null 2>&1 || true
    t0=$(now)
    ctr --address "$work/ctd/sock" images pull --plain-http "$host/big:latest" >/dev/null
    t1=$(now); samples[ctr pull]+="$(echo "$t1 - $t0" | bc) "
    echo "pull.sh: round $r done" >&2
}
for r in $(seq "${RUNS:-5}"); do round "$r"; done

echo "image: big, $size bytes compressed (4 gzip layers of incompressible data + 600 small files each); ${RUNS:-5} rounds, empty store each round"
echo
echo "| tool | seconds, median (min–max) | MB/s (compressed size / median) |"
echo "|---|---|---|"
for tool in kubelet-rs skopeo+umoci "ctr pull"; do
    python3 - "$tool" "$size" ${samples[$tool]} <<'EOF'
import statistics, sys
tool, size, xs = sys.argv[1], int(sys.argv[2]), sorted(float(x) for x in sys.argv[3:])
med = statistics.median(xs)
print(f"| {tool} | {med:.2f} ({xs[0]:.2f}–{xs[-1]:.2f}) | {size / med / 1e6:.0f} |")
EOF
done
