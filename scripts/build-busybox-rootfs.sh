#!/bin/sh
# Build a busybox root filesystem from Debian's busybox-static package, with no network.
# Usage: scripts/build-busybox-rootfs.sh DEST
set -eu
dest=${1:?usage: $0 DEST}
busybox=${BUSYBOX:-/bin/busybox}
if ! [ -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
    echo "$0: $busybox not found; install it with: apt-get install busybox-static" >&2
    exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "$0: $busybox is dynamically linked; the rootfs needs busybox-static" >&2
    exit 1
fi
rm -rf "$dest"
mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin etc proc sys dev tmp root home/user var/run run usr/bin usr/sbin
cp "$busybox" bin/busybox
for applet in $(bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "bin/$applet"
done
cat > etc/passwd <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > etc/group <<'GROUP'
root:x:0:
tty:x:5:
user:x:1000:
nogroup:x:65534:
GROUP
echo "127.0.0.1 localhost" > etc/hosts
chmod 1777 tmp
chown 1000:1000 home/user
