#!/bin/sh
# A local registry with the walkthrough's example images, for machines without Docker Hub.
#
# Usage: sudo scripts/example-registry.sh up|down
#
# up: builds the images if needed (scripts/build-example-images.sh, from Debian packages),
# runs Debian's docker-registry on 127.0.0.1:5000 (or uses a registry already answering there,
# such as Debian's docker-registry service), pushes library/busybox:latest,
# library/nginx:latest, library/nginx:1.22, library/hello:1.0 and library/hello:2.0 (Docker
# Hub keeps one-part names under library/), and writes
# /etc/kubelet-rs/certs.d/docker.io/hosts.toml naming it as a mirror of Docker Hub, so that
# `nginx`, `busybox`, `hello:1.0` resolve to it (and anything it lacks to Docker Hub).
# down: stops the registry it started (by the PID it recorded) and removes the hosts.toml it
# wrote. Both are idempotent; the images and the registry's storage stay for the next `up`.
#
# Environment (defaults in brackets; the walkthrough test points them at its own directories):
#   KRS_EXAMPLE_REGISTRY_DIR [/var/lib/kubelet-rs-registry]  images, storage, pid file, log
#   KRS_EXAMPLE_HOSTS_DIR    [/etc/kubelet-rs/certs.d]       kubelet-rs's --hosts-dir
#   KRS_EXAMPLE_REGISTRY_ADDR [127.0.0.1:5000]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${KRS_EXAMPLE_REGISTRY_DIR:-/var/lib/kubelet-rs-registry}
hosts_dir=${KRS_EXAMPLE_HOSTS_DIR:-/etc/kubelet-rs/certs.d}
addr=${KRS_EXAMPLE_REGISTRY_ADDR:-127.0.0.1:5000}
hosts_toml=$hosts_dir/docker.io/hosts.toml
pidfile=$dir/registry.pid
marker="# Written by scripts/example-registry.sh up; removed by its down."
# image layout:repository:tag
pushes="busybox:library/busybox:latest nginx:library/nginx:latest nginx:library/nginx:1.22 hello-1.0:library/hello:1.0 hello-2.0:library/hello:2.0"

die() {
    echo "example-registry.sh: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; install it with: apt-get install $2"
}

# The PID of the registry this script started, if it still runs.
our_registry() {
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = docker-registry ] || return 1
    echo "$pid"
}

answers() {
    python3 - "$addr" <<'PY'
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2)
except urllib.error.HTTPError:
    pass  # any HTTP answer (401 with auth) means a registry serves there
except Exception:
    sys.exit(1)
PY
}

up() {
    need python3 python3
    need docker-registry docker-registry
    need skopeo skopeo
    mkdir -p "$dir/images"
    for name in busybox nginx hello-1.0 hello-2.0; do
        if ! [ -f "$dir/images/$name/index.json" ]; then
            "$here/build-example-images.sh" "$dir/images" --only "$name" >/dev/null
        fi
    done
    if our_registry >/dev/null; then
        echo "registry already running on $addr (pid $(our_registry))"
    elif answers; then
        echo "a registry already answers on $addr (Debian's docker-registry service?); using it"
    else
        cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: $addr
EOF
        nohup docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 < /dev/null &
        echo $! > "$pidfile"
        tries=0
        until answers; do
            tries=$((tries + 1))
            if [ $tries -gt 100 ] || ! our_registry >/dev/null; then
                die "docker-registry did not start on $addr; its log ($dir/registry.log):
$(cat "$dir/registry.log")"
            fi
            sleep 0.2
        done
        echo "registry running on $addr (pid $(cat "$pidfile"), storage $dir/storage)"
    fi
    for push in $pushes; do
        layout=${push%%:*}
        ref=${push#*:}
        skopeo copy --quiet --dest-tls-verify=false "oci:$dir/images/$layout:latest" "docker://$addr/$ref" \
            || die "pushing $layout as $addr/$ref failed"
        echo "pushed $addr/$ref"
    done
    if [ -f "$hosts_toml" ] && ! grep -qxF "$marker" "$hosts_toml"; then
        die "$hosts_toml exists and was not written by this script; add the mirror to it yourself:
[host.\"http://$addr\"]
  capabilities = [\"pull\", \"resolve\"]"
    fi
    mkdir -p "$hosts_dir/docker.io"
    cat > "$hosts_toml.tmp" <<EOF
$marker
# Docker Hub names (nginx, busybox, hello:1.0) are looked up in the local registry first.
server = "https://registry-1.docker.io"

[host."http://$addr"]
  capabilities = ["pull", "resolve"]
EOF
    mv "$hosts_toml.tmp" "$hosts_toml"
    echo "wrote $hosts_toml"
}

down() {
    if pid=$(our_registry); then
        kill "$pid"
        tries=0
        while [ -d "/proc/$pid" ] && [ $tries -lt 50 ]; do
            tries=$((tries + 1))
            sleep 0.1
        done
        [ -d "/proc/$pid" ] && kill -9 "$pid"
        echo "stopped the registry (pid $pid)"
    fi
    rm -f "$pidfile"
    if [ -f "$hosts_toml" ] && grep -qxF "$marker" "$hosts_toml"; then
        rm -f "$hosts_toml"
        rmdir "$hosts_dir/docker.io" 2>/dev/null || true
        echo "removed $hosts_toml"
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) die "usage: $0 up|down (got '${1:-}')" ;;
esac
