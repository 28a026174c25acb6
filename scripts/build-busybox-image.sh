#!/bin/sh
# Build an OCI image of the busybox root filesystem (scripts/build-busybox-rootfs.sh) as an
# OCI image-layout tar, importable with `ctr images import`. No registry, no network.
# Usage: scripts/build-busybox-image.sh OUT.tar [IMAGE-NAME [CMD-JSON]]
# CMD-JSON is the image's Cmd as a JSON array (default ["sh"]); a pause image for
# containerd's CRI, say, is busybox with a Cmd that sleeps until SIGTERM.
set -eu
out=${1:?usage: $0 OUT.tar [IMAGE-NAME [CMD-JSON]]}
name=${2:-localhost/krs-busybox:latest}
cmd=${3:-'["sh"]'}
here=$(cd "$(dirname "$0")" && pwd)
case $out in /*) ;; *) out=$(pwd)/$out ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/krs-busybox-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
sh "$here/build-busybox-rootfs.sh" "$work/rootfs"
mkdir -p "$work/layout/blobs/sha256"
blobs=$work/layout/blobs/sha256

# Store a file as a blob; print "<hex digest> <size>".
add_blob() {
    digest=$(sha256sum "$1" | cut -d' ' -f1)
    size=$(stat -c %s "$1")
    mv "$1" "$blobs/$digest"
    echo "$digest $size"
}

# One uncompressed layer; its digest is also its diff id. Sorted, with fixed times, so the
# same busybox gives the same image.
tar --sort=name --mtime=@0 --numeric-owner -C "$work/rootfs" -cf "$work/layer.tar" .
set -- $(add_blob "$work/layer.tar")
layer_digest=$1 layer_size=$2

case $(uname -m) in
    x86_64) arch=amd64 ;;
    aarch64) arch=arm64 ;;
    *) arch=$(dpkg --print-architecture) ;;
esac

printf '%s' '{"architecture":"'"$arch"'","os":"linux",'\
'"config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":'"$cmd"',"WorkingDir":"/"},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$layer_digest"'"]},'\
'"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/build-busybox-image.sh"}]}' > "$work/config.json"
set -- $(add_blob "$work/config.json")
config_digest=$1 config_size=$2

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}' > "$work/manifest.json"
set -- $(add_blob "$work/manifest.json")
manifest_digest=$1 manifest_size=$2

# containerd names the image from io.containerd.image.name; other tools read ref.name.
tag=${name##*:}
case $tag in */*) tag=latest ;; esac
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{'\
'"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"','\
'"platform":{"architecture":"'"$arch"'","os":"linux"},'\
'"annotations":{"io.containerd.image.name":"'"$name"'","org.opencontainers.image.ref.name":"'"$tag"'"}}]}' > "$work/layout/index.json"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/layout/oci-layout"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
