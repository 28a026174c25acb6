#!/bin/sh
# Build the OCI image layouts the image tests pull from a loopback registry, offline and
# reproducibly: busybox, busybox-zstd, layered, multiarch, big (see build-test-images.py).
# Needs python3, zstd and busybox-static. Usage: scripts/build-test-images.sh OUTDIR [--only NAME,...]
set -eu
exec python3 "$(dirname "$0")/build-test-images.py" "$@"
