#!/bin/sh
# Prove the test guest works: boot it and check inside that (i) cgroup v2 offers the memory,
# cpu, pids, io and cpuset controllers, (ii) `runtime-rs run` of a busybox bundle running
# `/bin/echo hello` prints hello, and (iii) the lifecycle integration tests pass.
# Usage: scripts/guest/smoke.sh [run-in-guest.sh options, e.g. --timeout 900 --keep]
set -eu
. "$(dirname "$0")/common.sh"
guest_check_host_tools
command -v python3 >/dev/null || die "needs python3 (to edit config.json)"

artifacts=$(build_tests runtime-rs lifecycle)
rt=$(echo "$artifacts" | awk '$1 == "bin" && $2 == "runtime-rs" { print $3 }')
test_exe=$(echo "$artifacts" | awk '$1 == "test" && $2 == "lifecycle" { print $3 }')
[ -x "$rt" ] && [ -x "$test_exe" ] || die "cargo did not build runtime-rs and the lifecycle tests"

# The bundle is made on the host: runtime-rs spec, then the process edited.
mkdir -p "$cache_dir"
bundle=$(mktemp -d "$cache_dir/smoke-bundle.XXXXXX")
trap 'rm -rf "$bundle"' EXIT
if ! "$rt" spec --bundle "$bundle" 2>"$bundle/spec.err"; then
    say "WARNING: runtime-rs spec failed ($(grep -m1 -v '^$' "$bundle/spec.err")); using runc spec instead"
    command -v runc >/dev/null || die "runtime-rs spec failed and runc is not installed"
    runc spec --bundle "$bundle"
fi
rm -f "$bundle/spec.err"
python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    config = json.load(f)
config["process"]["args"] = ["/bin/echo", "hello"]
config["process"]["terminal"] = False
with open(path, "w") as f:
    json.dump(config, f, indent=2)
PY
sh "$repo_dir/scripts/build-busybox-rootfs.sh" "$bundle/rootfs"

rootfs=$(dirname "$(dirname "$test_exe")")/krs-busybox-rootfs
"$guest_dir/run-in-guest.sh" --timeout 900 "$@" \
    --add "$rt" --add "$test_exe" --busybox-rootfs "$rootfs" \
    --add-as "$bundle" /krs-smoke/bundle --add-as "$guest_dir/smoke-guest.sh" /krs-smoke/smoke-guest.sh \
    --env "KRS_RUNTIME=$rt" --env KRS_BUNDLE=/krs-smoke/bundle --env "KRS_TEST=$test_exe" \
    --env RUST_BACKTRACE=1 --cwd "$repo_dir/runtime" \
    -- sh /krs-smoke/smoke-guest.sh
