#!/bin/sh
# Fetch Debian's kernel for the test guest without installing it on the host: download the
# linux-image-*-amd64 package that linux-image-amd64 depends on and unpack it under
# target/guest/kernel/<package>_<version>. Prints that directory (boot/vmlinuz-*, boot/config-*,
# lib/modules/<release>/ with modules.dep). Cached: a second call only asks apt which version is current.
# Usage: scripts/guest/fetch-kernel.sh
set -eu
. "$(dirname "$0")/common.sh"

kernels=$cache_dir/kernel
pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
ver=
[ -n "$pkg" ] && ver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')
if [ -z "$pkg" ] || [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    # No apt lists (apt-get update not run): use the newest kernel already unpacked, if any.
    found=$(ls -d "$kernels"/*/.complete 2>/dev/null | sort -V | tail -n 1)
    [ -n "$found" ] || die "apt does not know linux-image-amd64's kernel package; run: apt-get update"
    say "apt lists unavailable; using the cached $(basename "$(dirname "$found")")"
    dirname "$found"
    exit 0
fi

mkdir -p "$kernels"
# One download at a time when several runs start together.
exec 9>"$kernels/.lock"
flock 9
dest=$kernels/${pkg}_$(echo "$ver" | tr ':/' '__')
if [ ! -e "$dest/.complete" ]; then
    say "downloading $pkg $ver (not installed: unpacked into $dest)"
    rm -rf "$dest" "$dest.tmp"
    mkdir -p "$dest.tmp/deb"
    # APT::Sandbox::User=root: the _apt user may not be able to write under target/.
    (cd "$dest.tmp/deb" && apt-get download -q=2 -o APT::Sandbox::User=root "$pkg=$ver")
    dpkg-deb -x "$dest.tmp"/deb/*.deb "$dest.tmp/root"
    rm -rf "$dest.tmp/deb"
    # The package leaves modules.dep to its postinst; busybox's depmod writes it (no kmod needed).
    release=$(ls "$dest.tmp/root/lib/modules")
    /bin/busybox depmod -b "$dest.tmp/root" "$release"
    mv "$dest.tmp/root" "$dest"
    rmdir "$dest.tmp"
    touch "$dest/.complete"
    # Older kernels are no longer what apt offers; drop them (~460 MB each).
    for old in "$kernels"/*/; do
        [ "${old%/}" = "$dest" ] || rm -rf "${old%/}"
    done
fi
echo "$dest"
