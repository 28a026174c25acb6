#!/bin/bash
# Container lifecycle benchmark: runtime-rs, runc and crun side by side in one run.
#
# What it measures, for a busybox bundle whose process is /bin/true (read-only root, the
# default namespaces including network, terminal false):
#   - create + start + wait for the container to exit + delete, as separate commands
#   - run in the foreground
#   - the floor: `unshare --pid --mount --net --uts --ipc --fork /bin/true`
# and reports the median wall time (with p10-p90) of each, the CPU time of the runtime
# commands, and the peak RSS (GNU time's %M, in separate untimed rounds). Each runtime runs two
# bundles: "default" (the default spec) and "nodev" (the same without
# linux.resources.devices; crun needs it on hosts where it cannot raise RLIMIT_MEMLOCK).
# The timing itself is done by bench/lifecycle.py; see its docstring.
#
# How to run (root needed: it creates namespaces and a cgroup):
#   sudo bench/lifecycle.sh
# Environment:
#   RUNTIME_RS=PATH   runtime-rs binary to use; default: build with
#                     `cargo build --release -p runtime-rs` and use target/release/runtime-rs
#   RUNS=N            timed rounds per case (default 60); WARMUP=N rounds first (default 5)
#   RSS_RUNS=N        rounds under GNU time, after the timed ones, for peak RSS (default 10)
#   PAUSE_MS=N        idle time before each timed sequence (default 0: back to back). Some
#                     kernel costs (RCU grace periods, e.g. when moving a process into a
#                     cgroup) are paid only when the previous such operation is not recent.
#   VARIANTS="default nodev"   bundles to measure
#   JSON=PATH         also write every sample as JSON
# It installs nothing; a missing tool is reported with the package to apt-get install.
#
# Cgroups: the runtimes must see a cgroup2 hierarchy of our own and nothing else. On a
# hybrid host (v1 hierarchies under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified) runc
# would write to the v1 hierarchies and crun refuses to run. So we create one cgroup,
# krs-bench-<pid>, in the cgroup2 hierarchy, and run everything in a private mount
# namespace where that cgroup is bind-mounted on /sys/fs/cgroup. Each bundle's
# linux.cgroupsPath is /bench/krs-bench-<case>, i.e. inside our cgroup. No existing cgroup
# or mount is written to. Everything we create (cgroup, bundles, state, containers) is
# removed on exit, also on failure or interrupt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "lifecycle.sh: $*" >&2; exit 1; }

# ---- inside the private mount namespace -------------------------------------------------
if [ "${1-}" = __inner ]; then
    cgroup=$2 work=$3
    shift 3
    mount --make-rprivate /
    mount --bind "$cgroup" /sys/fs/cgroup
    mkdir -p "$work/state"
    # The runtimes' state goes to a tmpfs as on a normal host's /run; it vanishes with us.
    mount -t tmpfs -o mode=0700,size=64m krs-bench-state "$work/state"
    exec python3 "$here/lifecycle.py" --rootfs "$work/rootfs" --workdir "$work" \
        --state "$work/state" "$@"
fi

# ---- preflight --------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (namespaces, mounts, a cgroup): sudo $0"
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need python3 python3
need unshare util-linux
need mount mount
need runc runc
need crun crun
[ -x /bin/busybox ] || missing+=(busybox-static)
[ -x /usr/bin/time ] || missing+=(time)  # GNU time, for peak RSS
[ ${#missing[@]} = 0 ] || die "missing tools; install them with: apt-get install -y ${missing[*]}"

cgroup2_parent=
if [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then
    cgroup2_parent=/sys/fs/cgroup
elif [ -d /sys/fs/cgroup/unified ] && [ "$(stat -f -c %T /sys/fs/cgroup/unified)" = cgroup2fs ]; then
    cgroup2_parent=/sys/fs/cgroup/unified
else
    die "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
fi

if [ -n "${RUNTIME_RS-}" ]; then
    runtime_rs=$(realpath "$RUNTIME_RS")
    given=1
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found; build runtime-rs yourself and set RUNTIME_RS=path/to/runtime-rs"
    echo "building runtime-rs (cargo build --release -p runtime-rs)" >&2
    (cd "$repo" && cargo build --release -p runtime-rs >&2)
    runtime_rs=$repo/target/release/runtime-rs
    given=
fi
[ -x "$runtime_rs" ] || die "$runtime_rs is not an executable"
# The commit, and whether runtime-rs's sources differ from it (other changes do not matter).
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$repo" status --porcelain -- runtime Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    rev="$rev + uncommitted runtime/ changes"
fi
# A binary given with RUNTIME_RS may have been built from another tree.
[ -n "$given" ] && rev="RUNTIME_RS given, tree at $rev"

# ---- setup and cleanup ------------------------------------------------------------------
cgroup=$cgroup2_parent/krs-bench-$$
work=
inner=

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$inner" ] && kill -0 "$inner" 2>/dev/null; then
        kill -TERM "$inner" 2>/dev/null || true
        wait "$inner" 2>/dev/null || true
    fi
    if [ -d "$cgroup" ]; then
        # Anything still in our cgroup is a container we started: kill it, then remove the
        # cgroups deepest first.
        if [ -e "$cgroup/cgroup.kill" ]; then
            echo 1 >"$cgroup/cgroup.kill" 2>/dev/null || true
        else
            find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
                kill -KILL "$pid" 2>/dev/null || true
            done
        fi
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            find "$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
            [ -d "$cgroup" ] || break
            sleep 0.2
        done
        [ -d "$cgroup" ] && echo "lifecycle.sh: could not remove $cgroup" >&2
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then
        # Nothing is mounted under $work in this namespace; --one-file-system guards anyway.
        rm -rf --one-file-system "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

work=$(mktemp -d /tmp/krs-bench.XXXXXX)
mkdir "$cgroup"
"$repo/scripts/build-busybox-rootfs.sh" "$work/rootfs" >&2

args=(--runtime "runc=$(command -v runc)" --runtime "crun=$(command -v crun)"
      --runtime "runtime-rs=$runtime_rs" --version-suffix "runtime-rs= ($rev)"
      --runs "${RUNS:-60}" --warmup "${WARMUP:-5}" --rss-runs "${RSS_RUNS:-10}"
      --pause-ms "${PAUSE_MS:-0}")
for v in ${VARIANTS:-default nodev}; do args+=(--variant "$v"); done
[ -n "${JSON-}" ] && args+=(--json "$(realpath -m "$JSON")")

echo "cgroup $cgroup, work dir $work; measuring (this takes a minute or two)" >&2
unshare --mount --propagation private -- "$BASH" "$here/lifecycle.sh" __inner "$cgroup" "$work" "${args[@]}" &
inner=$!
wait "$inner"
