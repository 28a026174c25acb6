#!/bin/sh
# Run a command as root inside a throwaway QEMU guest (TCG, no KVM needed) booted from Debian's
# kernel with a cgroup v2-only hierarchy and every controller enabled: where cgroup limits
# (memory, cpu, pids, io, cpuset) can be tested for real on a host whose own cgroups are hybrid.
#
# Usage: scripts/guest/run-in-guest.sh [options] -- CMD [ARG...]
#   --timeout S          kill the guest after S seconds (default 600); exit 124
#   --mem MB             guest memory (default 1024)
#   --cpus N             guest cpus (default 2)
#   --with-runtime       cargo build runtime-rs and put it in the guest at the same path, on PATH
#   --kernel-log         show the kernel's boot messages (default: quiet)
#   --keep               keep the run directory (initramfs, console log) under target/guest/runs
#   --log FILE           also write the guest's console output to FILE
#   and build-initramfs.sh's content options: --add PATH, --add-as PATH GUEST,
#   --busybox-rootfs DIR, --module NAME, --env NAME=VALUE, --cwd DIR, --no-strip
#
# The guest's console (kernel messages, the command's stdout and stderr) is streamed to stdout.
# Exit status: the command's, as reported by the guest's "KRS-GUEST-EXIT <code>" line; 124 on
# timeout; 125 when the guest could not be built or booted, or died without reporting.
#
# Host packages: qemu-system-x86 cpio busybox-static binutils (checked; .ci/run installs them).
set -eu
. "$(dirname "$0")/common.sh"

timeout=600 mem=1024 cpus=2 with_runtime='' quiet=quiet keep='' log=''
# build-initramfs.sh's options, shell-quoted, to be put back in front of the command.
content=
forward() { for a in "$@"; do content="$content $(shell_quote "$a")"; done; }
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) timeout=$2; shift 2 ;;
        --mem) mem=$2; shift 2 ;;
        --cpus) cpus=$2; shift 2 ;;
        --with-runtime) with_runtime=1; shift ;;
        --kernel-log) quiet=; shift ;;
        --keep) keep=1; shift ;;
        --log) log=$2; shift 2 ;;
        --add|--busybox-rootfs|--module|--env|--cwd) forward "$1" "$2"; shift 2 ;;
        --add-as) forward "$1" "$2" "$3"; shift 3 ;;
        --no-strip) forward "$1"; shift ;;
        --) shift; break ;;
        *) die "unknown option $1 (see the usage at the top of this script)" ;;
    esac
done
[ $# -gt 0 ] || die "usage: $0 [options] -- CMD [ARG...]"
guest_check_host_tools

mkdir -p "$cache_dir/runs"
run=$(mktemp -d "$cache_dir/runs/run.XXXXXX")
qpid='' tpid=''
# shellcheck disable=SC2329 # called by the trap
cleanup() {
    if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
        kill "$qpid" 2>/dev/null || true
        wait "$qpid" 2>/dev/null || true
    fi
    if [ -n "$tpid" ]; then
        kill "$tpid" 2>/dev/null || true
        wait "$tpid" 2>/dev/null || true
    fi
    if [ -n "$keep" ]; then say "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$(date +%s)
kernel=$("$guest_dir/fetch-kernel.sh")
if [ -n "$with_runtime" ]; then
    rt=$(build_runtime)
    [ -x "$rt" ] || die "cargo build -p runtime-rs did not produce a binary"
    forward --add "$rt" --env "PATH=$(dirname "$rt"):/usr/sbin:/usr/bin:/sbin:/bin"
fi

eval "set -- $content -- \"\$@\""
"$guest_dir/build-initramfs.sh" --out "$run/initrd.gz" --kernel "$kernel" "$@"
t1=$(date +%s)
say "initramfs $(du -h "$run/initrd.gz" | cut -f1) built in $((t1 - t0))s; booting (timeout ${timeout}s)"

vmlinuz=$(ls "$kernel"/boot/vmlinuz-*)
: > "$run/console.log"
qemu-system-x86_64 -accel tcg -nodefaults -no-user-config -display none -no-reboot \
    -m "$mem" -smp "$cpus" -serial "file:$run/console.log" \
    -kernel "$vmlinuz" -initrd "$run/initrd.gz" \
    -append "console=ttyS0 panic=-1 cgroup_no_v1=all $quiet" </dev/null &
qpid=$!
tail -n +1 -f --pid="$qpid" "$run/console.log" | tr -d '\r' &
tpid=$!

status=
while kill -0 "$qpid" 2>/dev/null; do
    if [ $(($(date +%s) - t1)) -ge "$timeout" ]; then
        kill "$qpid" 2>/dev/null || true
        status=124
    fi
    sleep 0.2
done
wait "$qpid" 2>/dev/null || true
qpid=
wait "$tpid" 2>/dev/null || true
tpid=
t2=$(date +%s)
[ -n "$log" ] && tr -d '\r' < "$run/console.log" > "$log"

if [ -z "$status" ]; then
    status=$(tr -d '\r' < "$run/console.log" | sed -n 's/^KRS-GUEST-EXIT \([0-9][0-9]*\)$/\1/p' | tail -n 1)
    if [ -z "$status" ]; then
        say "the guest stopped after $((t2 - t1))s without reporting an exit status (kernel panic or crash?)"
        status=125
    else
        say "guest command exited $status; boot and run took $((t2 - t1))s"
    fi
else
    say "timed out after ${timeout}s; killed the guest"
fi
exit "$status"
