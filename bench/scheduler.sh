#!/bin/bash
# Scheduler throughput in the style of Kubernetes' scheduler_perf SchedulingBasic: fake nodes
# (Node objects only: 4 cpu, 32Gi, 110 pods, Ready) and pods requesting 100m/500Mi, created
# in process on apiserver-lite's SQLite store before the scheduler starts; prints the pods
# bound per second from the first binding to the last (as a pod watch sees them), RUNS times
# with the load average, since the host is shared.
#
# Usage: bench/scheduler.sh      (NODES=5000 PODS=10000 RUNS=3 by default)
# The test it runs: apiserver-lite/tests/scheduler.rs scheduling_basic_throughput (release).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
NODES=${NODES:-5000} PODS=${PODS:-10000} RUNS=${RUNS:-3}
cd "$repo"
cargo test --release -q -p apiserver-lite --test scheduler --no-run
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $NODES nodes, $PODS pods"
for i in $(seq "$RUNS"); do
    echo "run $i: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    SCHED_BENCH=1 SCHED_BENCH_NODES=$NODES SCHED_BENCH_PODS=$PODS timeout 900 \
        cargo test --release -q -p apiserver-lite --test scheduler -- --ignored scheduling_basic_throughput --nocapture 2>&1 |
        grep -E '^(created|SchedulingBasic)' || { echo "run $i failed" >&2; exit 1; }
done
