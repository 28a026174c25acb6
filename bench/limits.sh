#!/bin/sh
# Resource-limit benchmark in the cgroup v2 test guest: runtime-rs, runc and crun side by side.
#
# Boots the QEMU guest of scripts/guest (cgroup v2 with every controller; TCG, so absolute
# times are several times a real machine's: compare the runtimes within one run) and runs
# bench/limits (krs-bench-limits) in it, which measures for each runtime:
#   - create+start+wait+delete and run of a busybox /bin/true bundle with memory.max and
#     pids.max set, median and p10-p90 over RUNS rounds, interleaved;
#   - the smallest memory.max at which `run` of that bundle still succeeds (bisection, 64 KiB
#     resolution, each point tried twice).
# It prints a Markdown table for BENCHMARKS.md.
#
# Usage: sudo bench/limits.sh            (RUNS=N timed rounds, default 20)
# Host needs what scripts/guest/check-host.sh lists, plus runc and crun.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "limits.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (the guest scripts do): sudo $0"
"$repo/scripts/guest/check-host.sh" >/dev/null || exit 125
for t in runc crun; do command -v $t >/dev/null || die "$t is not installed: apt-get install -y $t"; done

echo "limits.sh: building runtime-rs and krs-bench-limits (release)" >&2
(cd "$repo" && cargo build --release --locked -p runtime-rs -p krs-bench-limits >&2)
rt=$repo/target/release/runtime-rs
driver=$repo/target/release/krs-bench-limits
rootfs=/krs-bench/rootfs

exec "$repo/scripts/guest/run-in-guest.sh" --timeout "${TIMEOUT:-1800}" \
    --add "$rt" --add "$driver" --add "$(command -v runc)" --add "$(command -v crun)" \
    --busybox-rootfs "$rootfs" -- \
    "$driver" --rootfs "$rootfs" --work /tmp/krs-bench-work \
    --runtime "runtime-rs=$rt" --runtime "runc=$(command -v runc)" --runtime "crun=$(command -v crun)" \
    --runs "${RUNS:-20}"
