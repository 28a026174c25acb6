#!/bin/sh
# The guest half of smoke.sh: runs inside the test guest. Needs KRS_RUNTIME (runtime-rs),
# KRS_BUNDLE (a bundle whose process is `/bin/echo hello`) and KRS_TEST (a test binary).
fail=0
ok() { echo "smoke: ok: $1"; }
failed() { echo "smoke: FAIL: $1"; fail=1; }

echo "smoke: cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
missing=''
for c in memory cpu pids io cpuset; do
    grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || missing="$missing $c"
done
if [ -z "$missing" ]; then ok "cgroup v2 has memory cpu pids io cpuset"; else failed "cgroup v2 lacks$missing"; fi

out=$("$KRS_RUNTIME" --root /run/krs-smoke run --bundle "$KRS_BUNDLE" smoke-echo 2>&1 </dev/null)
rc=$?
echo "smoke: runtime-rs run printed: $out (exit $rc)"
if [ "$rc" = 0 ] && [ "$out" = hello ]; then
    ok "runtime-rs run of the busybox bundle prints hello"
else
    failed "runtime-rs run of the busybox bundle"
fi

if "$KRS_TEST" --include-ignored --test-threads=1; then
    ok "integration tests $KRS_TEST"
else
    failed "integration tests $KRS_TEST"
fi
exit $fail
