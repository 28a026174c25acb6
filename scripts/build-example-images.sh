#!/bin/sh
# Build the walkthrough's example images (busybox, nginx, hello-1.0, hello-2.0) as OCI image
# layouts, offline, from Debian packages (see build-example-images.py). Needs python3,
# busybox-static, nginx-light and python3-flask.
# Usage: scripts/build-example-images.sh OUTDIR [--only NAME,...]
set -eu
exec python3 "$(dirname "$0")/build-example-images.py" "$@"
