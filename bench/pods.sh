#!/bin/sh
# Pod startup latency (create to Running through a watch, image present) of kubelet-rs on
# its own CRI service and on containerd 1.6 + runc, one pod at a time and a batch at once,
# with memory afterwards. Root; release build. Usage: sudo bench/pods.sh [--single N] [--batch N]
set -e
cd "$(dirname "$0")/.."
cargo build --release -q -p kubelet-rs -p runtime-rs -p cni -p krs-bench-pods
exec target/release/krs-bench-pods "$@"
