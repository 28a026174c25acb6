#!/bin/bash
# CRI pod lifecycle benchmark: `kubelet-rs cri` (with runtime-rs) against containerd's CRI
# plugin (Debian's containerd 1.6, with runc), in one run, rounds interleaved.
#
# What it measures, through each service's CRI socket, as the kubelet calls it (the driver is
# bench/cri, `krs-bench-cri`): RunPodSandbox (pod network from the same CNI plugins and
# conflist: krs-bridge, krs-host-local, krs-portmap with a hostPort), CreateContainer and
# StartContainer of the same busybox image (`sh` that exits on SIGTERM), StopContainer,
# RemoveContainer, StopPodSandbox, RemovePodSandbox; median and 90th percentile of each call
# and of the whole. The image is imported into both beforehand, so no pull is timed.
#
# How to run (root: namespaces, mounts, a cgroup):
#   sudo bench/cri.sh
# Environment:
#   RUNS=N      timed rounds per service (default 20); WARMUP=N untimed rounds first (default 2)
#   BIN_DIR=D   where kubelet-rs, runtime-rs, krs-bridge, krs-host-local, krs-portmap and
#               krs-bench-cri are; default: `cargo build --release` them, use target/release
#   JSON=PATH   also write every sample as JSON
#
# Isolation: each service runs in a network namespace of its own (held by a `sleep` we
# start; `nsenter --net`), so bridges, veths and nftables rules never touch the host's.
# containerd also runs in a mount namespace of its own, where /run is a tmpfs, /var/lib an
# overlay writing into our directory, and our cgroup (krs-bench-cri-<pid>, in the cgroup v2
# hierarchy) is bind-mounted over /sys/fs/cgroup and the root of a cgroup namespace: runc
# sees a pure cgroup v2 host and never writes to the v1 hierarchies of a hybrid host (as
# tests/support/src/containerd.rs does). runtime-rs uses the v2 hierarchy itself; its pods
# go below the same cgroup. On exit (also on failure or interrupt): processes we started
# are stopped by pid, the cgroup is emptied and removed, mounts under our directory are
# unmounted and the directory removed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
RUNS=${RUNS:-20}
WARMUP=${WARMUP:-2}
IMAGE=localhost/krs-busybox:latest
PAUSE=localhost/krs-pause:1
# The pause image's command: busybox's sh sleeping until SIGTERM.
PAUSE_CMD='["/bin/sh","-c","trap '"'"'exit 0'"'"' TERM; while :; do sleep 1; done"]'

die() { echo "cri.sh: $*" >&2; exit 1; }

# ---- preflight --------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (namespaces, mounts, a cgroup): sudo $0"
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need containerd containerd
need ctr containerd
need containerd-shim-runc-v2 containerd
need runc runc
need nsenter util-linux
need unshare util-linux
need python3 python3
[ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
[ ${#missing[@]} = 0 ] || die "missing tools; install them with: apt-get install -y ${missing[*]}"
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    cgroup2=/sys/fs/cgroup
elif [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
    cgroup2=/sys/fs/cgroup/unified
else
    die "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
fi

if [ -n "${BIN_DIR-}" ]; then
    bin=$(realpath "$BIN_DIR")
else
    (cd "$repo" && cargo build --release -q -p kubelet-rs -p runtime-rs -p cni -p krs-bench-cri) || die "cargo build failed"
    bin=$repo/target/release
fi
for b in kubelet-rs runtime-rs krs-bridge krs-host-local krs-portmap krs-bench-cri; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing"
done

# ---- what we make, and its cleanup ------------------------------------------------------
work=$(mktemp -d /tmp/krs-bench-cri.XXXXXX)
cg=$cgroup2/krs-bench-cri-$$
pids=()
cleanup() {
    set +e
    # Services first (SIGTERM, then SIGKILL after 10 s), then the namespace holders.
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    # Whatever is left in our cgroup (shims, containers, monitors) is ours: kill it, then
    # remove the cgroups, deepest first.
    if [ -d "$cg" ]; then
        echo 1 > "$cg/cgroup.kill" 2>/dev/null
        for _ in $(seq 50); do
            find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$cg" ] || break
            sleep 0.1
        done
        [ -d "$cg" ] && echo "cri.sh: cannot remove $cg" >&2
    fi
    # kubelet-rs's mounts (rootfs overlays, namespace files) are on the host: unmount them.
    awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount --lazy "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$cg" "$cg/ctrd"

# A network namespace held by a sleep of ours, `lo` up; prints the holder's pid.
netns() {
    unshare --net sleep infinity &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 50); do
        [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
        sleep 0.02
    done
    nsenter --net="/proc/$pid/ns/net" ip link set lo up
    holder=$pid
}

# ---- images, plugins, network configuration ---------------------------------------------
echo "building the busybox and pause images..." >&2
sh "$repo/scripts/build-busybox-image.sh" "$work/busybox.tar" "$IMAGE" >/dev/null
sh "$repo/scripts/build-busybox-image.sh" "$work/pause.tar" "$PAUSE" "$PAUSE_CMD" >/dev/null

mkdir -p "$work/cni-bin"
cp "$bin/krs-bridge" "$bin/krs-host-local" "$bin/krs-portmap" "$work/cni-bin/"
# containerd's CRI always sets up the pod's lo with a plugin named loopback.
cp /usr/lib/cni/loopback "$work/cni-bin/"

conflist() {  # DIR: the conflist in DIR/net.d, IPAM data in DIR/ipam
    mkdir -p "$1/net.d" "$1/ipam"
    cat > "$1/net.d/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "krs-bench-cri",
 "plugins": [
  {"type": "krs-bridge", "bridge": "cni0", "isDefaultGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "krs-host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]], "dataDir": "$1/ipam"}},
  {"type": "krs-portmap", "capabilities": {"portMappings": true}}
 ]}
JSON
}

# ---- kubelet-rs cri ---------------------------------------------------------------------
krs=$work/krs
conflist "$krs"
"$bin/kubelet-rs" image --root "$krs/root" import "$work/busybox.tar" --name "$IMAGE" >/dev/null
netns
krs_netns=$holder
nsenter --net="/proc/$krs_netns/ns/net" -- "$bin/kubelet-rs" cri --socket "$krs/cri.sock" \
    --root "$krs/root" --state-dir "$krs/state" --oci-runtime "$bin/runtime-rs" \
    --cni-conf-dir "$krs/net.d" --cni-bin-dir "$work/cni-bin" --cni-cache-dir "$krs/cni-cache" \
    </dev/null >"$krs/service.log" 2>&1 &
pids+=($!)

# ---- containerd -------------------------------------------------------------------------
ctrd=$work/ctrd
conflist "$ctrd"
mkdir -p "$ctrd/var-lib/upper" "$ctrd/var-lib/work"
cat > "$ctrd/runc-wrapper" <<'SH'
#!/bin/sh
# runc, except that create first drops linux.resources.cpu from the bundle: the host's
# cgroup v2 may have no cpu controller, and CRI sets cpu shares on every sandbox.
case " $* " in *" create "*)
    bundle=; prev=
    for a; do case "$prev" in --bundle|-b) bundle=$a;; esac; prev=$a; done
    [ -n "$bundle" ] && python3 -c 'import json, sys
p = sys.argv[1]; spec = json.load(open(p))
spec.get("linux", {}).get("resources", {}).pop("cpu", None)
json.dump(spec, open(p, "w"))' "$bundle/config.json"
esac
exec runc "$@"
SH
chmod 755 "$ctrd/runc-wrapper"
cat > "$ctrd/config.toml" <<TOML
version = 2
root = "$ctrd/root"
state = "$ctrd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$ctrd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$ctrd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The sandbox's oom_score_adj -998 needs CAP_SYS_RESOURCE, which this root may lack.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$ctrd/runc-wrapper"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$work/cni-bin"
    conf_dir = "$ctrd/net.d"
    max_conf_num = 1
TOML
netns
ctrd_netns=$holder
# sh moves itself into our cgroup (the root of the cgroup namespace unshare makes, with the
# mount namespace), the inner sh into its ctrd leaf; each step execs the next, so the pid we
# hold is containerd's.
inner='mount --bind "$KRS_CG" /sys/fs/cgroup && echo $$ > /sys/fs/cgroup/ctrd/cgroup.procs && mount -t tmpfs -o mode=0755 krs-bench-run /run && mount -t overlay -o "lowerdir=/var/lib,upperdir=$KRS_VARLIB/upper,workdir=$KRS_VARLIB/work" krs-bench-var-lib /var/lib && exec containerd --config "$KRS_CONFIG"'
KRS_CG=$cg KRS_VARLIB=$ctrd/var-lib KRS_CONFIG=$ctrd/config.toml KRS_INNER=$inner \
    nsenter --net="/proc/$ctrd_netns/ns/net" -- sh -c 'echo $$ > "$KRS_CG/cgroup.procs" && exec unshare --mount --propagation private --cgroup sh -c "$KRS_INNER"' \
    </dev/null >"$ctrd/containerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    ctr --address "$ctrd/containerd.sock" version >/dev/null 2>&1 && break
    sleep 0.1
done
ctr --address "$ctrd/containerd.sock" version >/dev/null 2>&1 || { tail -20 "$ctrd/containerd.log" >&2; die "containerd did not start"; }
for t in busybox pause; do
    ctr --address "$ctrd/containerd.sock" -n k8s.io images import "$work/$t.tar" >/dev/null
done
for _ in $(seq 200); do [ -S "$krs/cri.sock" ] && break; sleep 0.1; done
[ -S "$krs/cri.sock" ] || { tail -20 "$krs/service.log" >&2; die "kubelet-rs cri did not start"; }

# ---- measure ----------------------------------------------------------------------------
commit=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "$(date -u +%F) commit $commit, $(uname -sr), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -1)"
mkdir -p "$work/logs"
status=0
"$bin/krs-bench-cri" --image "$IMAGE" --log-dir "$work/logs" --runs "$RUNS" --warmup "$WARMUP" ${JSON:+--json "$JSON"} \
    --target "kubelet-rs=$krs/cri.sock=/krs-bench-cri-$$/krs" \
    --target "containerd=$ctrd/containerd.sock=/pods" || status=$?
if [ $status != 0 ]; then
    echo "--- kubelet-rs log (tail)" >&2; tail -20 "$krs/service.log" >&2
    echo "--- containerd log (tail)" >&2; tail -20 "$ctrd/containerd.log" >&2
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
