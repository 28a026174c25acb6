#!/bin/sh
# Build cargo integration tests and run them as root inside the test guest (see run-in-guest.sh),
# where cgroup v2 is the only hierarchy and every controller is enabled.
#
# Usage: scripts/guest/test-in-guest.sh [options] TEST... [-- TEST-ARGS...]
#   TEST            an integration test of the package: runtime/tests/TEST.rs
#   -p PKG          the cargo package (default runtime-rs)
#   -F FEATURES     cargo features to build the tests with (e.g. guest-tests)
#   --test-images N1,N2  build these layouts of scripts/build-test-images.sh on the host (the
#                   guest has no python) and point the tests at them (KRS_TEST_IMAGES)
#   TEST-ARGS       passed to each test binary after --include-ignored --test-threads=1, e.g.
#                   a name filter or --exact NAME
#   options         run-in-guest.sh's: --timeout S (default 900), --mem MB, --cpus N, --log FILE,
#                   --keep, --kernel-log, --no-strip, --add PATH, --add-as PATH GUEST,
#                   --module NAME, --env NAME=VALUE
#
# Each test binary sits in the guest at its host path, with the package's binaries (so
# env!("CARGO_BIN_EXE_<name>") paths resolve) and a busybox rootfs at
# target/<profile>/krs-busybox-rootfs, where tests/support looks for it.
# Example: scripts/guest/test-in-guest.sh lifecycle -- run_in_foreground
# Exit status: 0 when every test binary passed, 1 when one failed, run-in-guest.sh's otherwise.
set -eu
. "$(dirname "$0")/common.sh"

pkg=runtime-rs
build_features=
test_images=
opts=
tests=
opt() { for a in "$@"; do opts="$opts $(shell_quote "$a")"; done; }
opt --timeout 900
while [ $# -gt 0 ]; do
    case $1 in
        -p) pkg=$2; shift 2 ;;
        -F) build_features=$2; shift 2 ;;
        --test-images) test_images=$2; shift 2 ;;
        --timeout|--mem|--cpus|--log|--add|--module|--env) opt "$1" "$2"; shift 2 ;;
        --add-as) opt "$1" "$2" "$3"; shift 3 ;;
        --keep|--kernel-log|--no-strip) opt "$1"; shift ;;
        --) shift; break ;;
        -*) die "unknown option $1 (see the usage at the top of this script)" ;;
        *) tests="$tests $1"; shift ;;
    esac
done
[ -n "$tests" ] || die "usage: $0 [options] TEST... [-- TEST-ARGS...]"
guest_check_host_tools

# shellcheck disable=SC2086 # $tests is a list of words
artifacts=$(build_tests "$pkg" $tests)
exes=
rootfs=
for t in $tests; do
    exe=$(echo "$artifacts" | awk -v t="$t" '$1 == "test" && $2 == t { print $3 }')
    [ -n "$exe" ] || die "cargo built no test named $t in package $pkg"
    exes="$exes $exe"
    opt --add "$exe"
    # tests/support: <test exe dir>/../krs-busybox-rootfs
    rootfs=$(dirname "$(dirname "$exe")")/krs-busybox-rootfs
done
for bin in $(echo "$artifacts" | awk '$1 == "bin" { print $3 }'); do opt --add "$bin"; done
opt --busybox-rootfs "$rootfs" --add "$repo_dir/scripts/build-busybox-rootfs.sh"
if [ -n "$test_images" ]; then
    images_dir=$cache_dir/test-images
    sh "$repo_dir/scripts/build-test-images.sh" "$images_dir" --only "$test_images" >/dev/null ||
        die "scripts/build-test-images.sh $images_dir --only $test_images failed"
    opt --add "$images_dir" --env "KRS_TEST_IMAGES=$images_dir"
fi
manifest_dir=$repo_dir/$(echo "$pkg" | sed 's/-rs$//')
[ -d "$manifest_dir" ] || manifest_dir=$repo_dir
opt --cwd "$manifest_dir" --env RUST_BACKTRACE=1 --env "KRS_TESTS=${exes# }"

# In the guest: each binary in turn, as cargo test would, every test included.
# shellcheck disable=SC2016,SC2034 # expanded in the guest; used in the eval below
script='rc=0; for t in $KRS_TESTS; do echo "krs-guest: test binary $t"; "$t" --include-ignored --test-threads=1 "$@" || rc=1; done; exit $rc'
eval "set -- $opts -- sh -c \"\$script\" sh \"\$@\""
exec "$guest_dir/run-in-guest.sh" "$@"
