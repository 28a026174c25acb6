#!/bin/sh
# Build the test guest's initramfs (cpio newc, gzip): busybox (static), scripts/guest/init, the
# requested kernel modules, the given files at their absolute paths with the shared libraries
# their ELF binaries need (found with ldd), an optional busybox test rootfs, and the command the
# guest runs.
#
# Usage: scripts/guest/build-initramfs.sh --out FILE --kernel DIR [options] -- CMD [ARG...]
#   --kernel DIR           a directory printed by fetch-kernel.sh (for modules)
#   --add PATH             copy a host file or directory into the guest at the same path
#   --add-as PATH GUEST    copy it to GUEST instead
#   --busybox-rootfs DIR   build a busybox rootfs at DIR in the guest (with a .complete marker,
#                          as tests/support expects) using scripts/build-busybox-rootfs.sh
#   --module NAME          load this kernel module (and its dependencies) at boot; repeatable
#   --env NAME=VALUE       set in the command's environment; repeatable
#   --cwd DIR              the command's working directory (default /)
#   --no-strip             keep debug info in copied ELF files (by default it is dropped with
#                          objcopy --strip-debug: a debug Rust binary shrinks ~8x; panics keep
#                          file:line, backtraces keep function names)
set -eu
. "$(dirname "$0")/common.sh"

out='' kernel='' cwd=/ strip=1 rootfs=''
adds=$(mktemp) modules='' envs=$(mktemp)
trap 'rm -f "$adds" "$envs"' EXIT
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --kernel) kernel=$2; shift 2 ;;
        --add) printf '%s\n%s\n' "$2" "$2" >> "$adds"; shift 2 ;;
        --add-as) printf '%s\n%s\n' "$2" "$3" >> "$adds"; shift 3 ;;
        --busybox-rootfs) rootfs=$2; shift 2 ;;
        --module) modules="$modules $2"; shift 2 ;;
        --env) printf 'export %s\n' "$(shell_quote "$2")" >> "$envs"; shift 2 ;;
        --cwd) cwd=$2; shift 2 ;;
        --no-strip) strip=; shift ;;
        --) shift; break ;;
        *) die "unknown option $1 (see the usage at the top of this script)" ;;
    esac
done
[ -n "$out" ] && [ -n "$kernel" ] || die "usage: $0 --out FILE --kernel DIR [options] -- CMD [ARG...]"
[ $# -gt 0 ] || die "no command given after --"
# Device nodes and the files' owners (the test rootfs has a uid 1000 home) need root.
[ "$(id -u)" = 0 ] || die "must run as root"

stage=$out.d
rm -rf "$stage"
mkdir -p "$stage"

base() {
    mkdir -p "$stage/bin" "$stage/dev" "$stage/etc" "$stage/proc" "$stage/sys" "$stage/tmp" \
        "$stage/run" "$stage/root" "$stage/krs-guest"
    chmod 1777 "$stage/tmp"
    # As on Debian: iproute2's `ip netns` keeps its namespaces under /var/run/netns.
    mkdir -p "$stage/var"
    ln -s /run "$stage/var/run"
    cp /bin/busybox "$stage/bin/busybox"
    for applet in $(/bin/busybox --list-full); do
        [ "$applet" = bin/busybox ] && continue
        mkdir -p "$stage/$(dirname "$applet")"
        ln -sf /bin/busybox "$stage/$applet"
    done
    cp "$guest_dir/init" "$stage/init"
    chmod 755 "$stage/init"
    # The kernel opens /dev/console for init before anything is mounted.
    mknod -m 600 "$stage/dev/console" c 5 1
    mknod -m 666 "$stage/dev/null" c 1 3
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$stage/etc/group"
    echo "127.0.0.1 localhost krs-guest" > "$stage/etc/hosts"
    # A node has one; CRI pods without a DNS config get a copy of it. No DNS here (no network).
    echo "# the test guest has no network beyond lo, so no name server" > "$stage/etc/resolv.conf"
}

# The modules.dep path of a module NAME, or nothing when it is built in or unknown.
module_path() {
    sed -n "s@^\([^:]*/$1\.ko[.a-z]*\):.*@\1@p" "$moddir/modules.dep" | head -n 1
}

# Print the module paths of NAME and its dependencies, dependencies first.
module_closure() {
    path=$(module_path "$1")
    if [ -z "$path" ]; then
        if grep -q "/$1\.ko\$" "$moddir/modules.builtin"; then
            say "module $1 is built into the kernel; nothing to load"
        else
            die "no kernel module named $1 in $moddir"
        fi
        return 0
    fi
    # modules.dep lists the whole closure; modprobe loads it from the last entry back.
    deps=$(sed -n "s@^$path: *@@p" "$moddir/modules.dep")
    for d in $(echo "$deps" | tr ' ' '\n' | sed '/^$/d' | tac); do echo "$d"; done
    echo "$path"
}

add_modules() {
    [ -n "$modules" ] || return 0
    release=$(ls "$kernel/lib/modules")
    moddir=$kernel/lib/modules/$release
    : > "$stage/krs-guest/modules.tmp"
    for m in $modules; do module_closure "$m" >> "$stage/krs-guest/modules.tmp"; done
    # Keep the first occurrence of each: dependencies stay before their users.
    awk '!seen[$0]++' "$stage/krs-guest/modules.tmp" | while read -r p; do
        mkdir -p "$stage/lib/modules/$release/$(dirname "$p")"
        cp "$moddir/$p" "$stage/lib/modules/$release/$p"
        echo "/lib/modules/$release/$p"
    done > "$stage/krs-guest/modules"
    rm "$stage/krs-guest/modules.tmp"
}

copy_in() {
    src=$1 dst=$stage$2
    [ -e "$src" ] || die "$src does not exist"
    mkdir -p "$(dirname "$dst")"
    if [ -d "$src" ]; then
        cp -a "$src" "$dst"
    elif [ -n "$strip" ] && is_elf "$src"; then
        objcopy --strip-debug "$src" "$dst"
        chmod --reference="$src" "$dst"
    else
        cp -a "$src" "$dst"
    fi
}

add_files() {
    while read -r src && read -r dst; do
        case $dst in /*) ;; *) die "guest path $dst is not absolute" ;; esac
        copy_in "$src" "$dst"
    done < "$adds"
}

# The shared libraries (and the dynamic loader) of every dynamic ELF in the image, at the paths
# ldd gives, so they resolve the same way in the guest.
add_libraries() {
    find "$stage" -type f -perm -u+x | while read -r f; do
        is_elf "$f" || continue
        ldd "$f" 2>/dev/null | sed -n 's@.*=> \(/[^ ]*\) (.*@\1@p; s@^[[:space:]]*\(/[^ ]*\) (.*@\1@p'
    done | sort -u | while read -r lib; do
        [ -e "$stage$lib" ] && continue
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
}

add_rootfs() {
    [ -n "$rootfs" ] || return 0
    sh "$repo_dir/scripts/build-busybox-rootfs.sh" "$stage$rootfs" >/dev/null
    touch "$stage$rootfs/.complete"
}

add_command() {
    {
        for a in "$@"; do printf '%s ' "$(shell_quote "$a")"; done
        echo
    } > "$stage/krs-guest/argv"
    cp "$envs" "$stage/krs-guest/env"
    echo "$cwd" > "$stage/krs-guest/cwd"
    mkdir -p "$stage$cwd"
}

base
add_modules
add_files
add_libraries
add_rootfs
add_command "$@"
(cd "$stage" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$stage"
