# Shared by the scripts in scripts/guest: where things live and the host tools they need.
# Sourced, not run.

guest_dir=$(cd "$(dirname "$0")" && pwd)
repo_dir=$(cd "$guest_dir/../.." && pwd)
# Kernels, initramfs images and run directories: all under target/, never committed.
# shellcheck disable=SC2034 # used by the scripts that source this
cache_dir=${KRS_GUEST_CACHE:-$repo_dir/target/guest}

die() {
    echo "${0##*/}: $*" >&2
    exit 125
}

say() {
    echo "${0##*/}: $*" >&2
}

# The Debian packages the guest scripts need on the host (check-host.sh --list prints them).
guest_host_packages="qemu-system-x86 cpio busybox-static binutils"

# Print the install command and fail when one of guest_host_packages is missing.
guest_check_host_tools() {
    missing=
    command -v qemu-system-x86_64 >/dev/null 2>&1 || missing="$missing qemu-system-x86"
    command -v cpio >/dev/null 2>&1 || missing="$missing cpio"
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing="$missing busybox-static"
    command -v objcopy >/dev/null 2>&1 || missing="$missing binutils"
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        die "needs apt-get and dpkg-deb (a Debian host)"
    fi
    if [ -n "$missing" ]; then
        echo "${0##*/}: missing host packages; install them with:" >&2
        echo "    apt-get install -y --no-install-recommends$missing" >&2
        exit 125
    fi
}

# True when the file starts with the ELF magic.
is_elf() {
    [ -f "$1" ] && [ "$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]
}

# Quote one argument for a POSIX shell.
shell_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# From cargo's --message-format=json on stdin, print "KIND NAME EXECUTABLE" for every artifact
# with an executable (bins and test harnesses). sed, so the host needs no jq.
cargo_executables() {
    grep '"reason":"compiler-artifact"' | grep '"executable":"' | sed -n \
        's@.*"target":{"kind":\["\([^"]*\)"[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*@\1 \2 \3@p'
}

# Build runtime-rs (debug) and print the path of its binary.
build_runtime() {
    (cd "$repo_dir" && cargo build -p runtime-rs --bin runtime-rs --message-format=json-render-diagnostics) |
        cargo_executables | awk '$1 == "bin" && $2 == "runtime-rs" { print $3 }'
}

# Build the integration tests TEST... of cargo package PKG (cargo test --no-run, with the
# features in $build_features if set) and print their artifacts as cargo_executables does, the
# package's binaries included.
build_tests() {
    pkg=$1
    shift
    tests=
    for t in "$@"; do tests="$tests --test $t"; done
    # shellcheck disable=SC2086 # $tests is a list of words
    (cd "$repo_dir" && cargo test -p "$pkg" --no-run --message-format=json-render-diagnostics ${build_features:+--features "$build_features"} $tests) |
        cargo_executables
}
