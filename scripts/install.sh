#!/bin/sh
# Provision a Debian 12 / Ubuntu machine as a kubelet-rs node, as root: packages, the
# binaries (built here with cargo, or taken from --bin-dir), the kubelet-rs systemd
# service, kubeconfigs, and for a control plane the workers' join material. Every step is
# printed; a second run changes nothing. Vagrant runs it (see Vagrantfile, docs/vagrant.md);
# kubelet/tests/provision.rs runs it with --root.
set -eu

usage() {
    cat <<'EOF'
usage: scripts/install.sh [options]

Installs kubelet-rs as a systemd service (kubelet-rs.service) and starts it.

  --role control-plane|worker  a whole cluster here (kubelet-rs --apiserver, the default),
                           or a node joining one with the material in --join-dir
  --join-dir DIR           worker: read DIR/<node-name>/ (written by the control plane);
                           control plane: write each worker's material there
  --node-ip IP             the node's address (needed for a worker) [default: kubelet-rs's
                           choice, the first non-loopback IPv4 address]
  --node-name NAME         the node's name [default: the host name]
  --pod-cidr CIDR          the node's pod CIDR (needed for a worker, like 10.244.1.0/24)
  --cluster-dns IP         worker: the cluster DNS Service's IP [default: 10.96.0.10]
  --workers N              control plane: write join material for worker1..workerN
  --worker-names A,B       control plane: ... for these workers instead
  --worker-ips IP,IP       control plane: the workers' addresses, in --worker-names order
                           (put in their serving certificates)
  --server URL             control plane: the API server's URL as workers reach it
                           [default: https://<node-ip>:6443]
  --join-wait SECONDS      worker: how long to wait for the join material [default: 600]
  --user NAME              also give this login user the admin kubeconfig (~/.kube/config)
  --bin-dir DIR            install the binaries in DIR instead of building them
  --prefix DIR             where binaries go: PREFIX/bin [default: /usr/local]
  --data-dir DIR           kubelet-rs's --data-dir [default: /var/lib/kubelet-rs]
  --root DIR               install under DIR instead of / (files only: no apt-get, no
                           systemctl)
  --no-apt                 do not install Debian packages
  --no-kubectl             do not download kubectl when it is missing
  --no-start               do not enable and start the service
  -h, --help               this text
EOF
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

warn() {
    echo "install.sh: warning: $*" >&2
}

step() {
    echo "==> $*"
}

note() {
    echo "    $*"
}

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROLE=control-plane
ROOT=
PREFIX=/usr/local
BIN_DIR=
DATA_DIR=/var/lib/kubelet-rs
DO_APT=1
DO_START=1
DO_KUBECTL=1
LOGIN_USER=
JOIN_DIR=
JOIN_WAIT=600
NODE_IP=
NODE_NAME=
POD_CIDR=
CLUSTER_DNS=10.96.0.10
WORKERS=
WORKER_NAMES=
WORKER_IPS=
SERVER=
# The cgroup2 mount to check; a test points it at a folder of its own.
CGROUP_MOUNT=${KRS_CGROUP_MOUNT:-/sys/fs/cgroup}
KUBECTL_MINOR=1.33
# Edition 2024.
MIN_RUST=1.85

# ---- options -------------------------------------------------------------------------

# The value of option $1 ("--opt" "value" or "--opt=value"); $2 is what followed it.
value_of() {
    case $1 in
        *=*) printf '%s' "${1#*=}" ;;
        *) [ $# -ge 2 ] || die "$1 needs a value"
           printf '%s' "$2" ;;
    esac
}

while [ $# -gt 0 ]; do
    opt=$1
    case $opt in
        --*=*) name=${opt%%=*}; shifts=1 ;;
        *) name=$opt; shifts=2 ;;
    esac
    case $name in
        --role|--join-dir|--node-ip|--node-name|--pod-cidr|--cluster-dns|--workers|--worker-names|--worker-ips|--server|--join-wait|--user|--bin-dir|--prefix|--data-dir|--root)
            if [ $shifts = 2 ]; then
                [ $# -ge 2 ] || die "$name needs a value"
                val=$2
            else
                val=$(value_of "$opt")
            fi
            [ -n "$val" ] || die "$name needs a value"
            case $name in
                --role) ROLE=$val ;;
                --join-dir) JOIN_DIR=$val ;;
                --node-ip) NODE_IP=$val ;;
                --node-name) NODE_NAME=$val ;;
                --pod-cidr) POD_CIDR=$val ;;
                --cluster-dns) CLUSTER_DNS=$val ;;
                --workers) WORKERS=$val ;;
                --worker-names) WORKER_NAMES=$val ;;
                --worker-ips) WORKER_IPS=$val ;;
                --server) SERVER=$val ;;
                --join-wait) JOIN_WAIT=$val ;;
                --user) LOGIN_USER=$val ;;
                --bin-dir) BIN_DIR=$val ;;
                --prefix) PREFIX=$val ;;
                --data-dir) DATA_DIR=$val ;;
                --root) ROOT=$val ;;
            esac
            shift $shifts
            ;;
        --no-apt) DO_APT=0; shift ;;
        --no-kubectl) DO_KUBECTL=0; shift ;;
        --no-start) DO_START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $opt (see --help)" ;;
    esac
done

is_ipv4() {
    echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}$'
}

is_cidr() {
    echo "$1" | grep -Eq '^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$'
}

is_name() {
    echo "$1" | grep -Eq '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'
}

# Count of comma-separated items.
count_items() {
    echo "$1" | tr ',' '\n' | grep -c .
}

validate() {
    case $ROLE in
        control-plane|worker) ;;
        *) die "--role must be control-plane or worker, not \"$ROLE\"" ;;
    esac
    [ "$(id -u)" = 0 ] || [ -n "$ROOT" ] || die "run as root (or with --root DIR to install files under DIR)"
    if [ -n "$ROOT" ]; then
        case $ROOT in /*) ;; *) die "--root must be an absolute path, not \"$ROOT\"" ;; esac
        ROOT=${ROOT%/}
        [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    fi
    case $PREFIX in /*) ;; *) die "--prefix must be an absolute path, not \"$PREFIX\"" ;; esac
    case $DATA_DIR in /*) ;; *) die "--data-dir must be an absolute path, not \"$DATA_DIR\"" ;; esac
    [ -z "$NODE_IP" ] || is_ipv4 "$NODE_IP" || die "--node-ip: \"$NODE_IP\" is not an IPv4 address"
    [ -z "$POD_CIDR" ] || is_cidr "$POD_CIDR" || die "--pod-cidr: \"$POD_CIDR\" is not an IPv4 CIDR (like 10.244.1.0/24)"
    is_ipv4 "$CLUSTER_DNS" || die "--cluster-dns: \"$CLUSTER_DNS\" is not an IPv4 address"
    [ -z "$NODE_NAME" ] || is_name "$NODE_NAME" || die "--node-name: \"$NODE_NAME\" is not a node name (lowercase letters, digits, '-' and '.')"
    echo "$JOIN_WAIT" | grep -Eq '^[0-9]+$' || die "--join-wait: \"$JOIN_WAIT\" is not a number of seconds"
    if [ -n "$BIN_DIR" ]; then
        [ -d "$BIN_DIR" ] || die "--bin-dir $BIN_DIR: no such directory"
        BIN_DIR=$(cd "$BIN_DIR" && pwd)
    fi
    if [ "$ROLE" = worker ]; then
        [ -n "$JOIN_DIR" ] || die "--role worker needs --join-dir DIR (the control plane's join material, see --workers)"
        [ -n "$NODE_IP" ] || die "--role worker needs --node-ip IP (the address the other nodes reach it at)"
        [ -n "$POD_CIDR" ] || die "--role worker needs --pod-cidr CIDR (its own, like 10.244.1.0/24)"
        for o in "--workers:$WORKERS" "--worker-names:$WORKER_NAMES" "--worker-ips:$WORKER_IPS" "--server:$SERVER"; do
            [ -z "${o#*:}" ] || die "${o%%:*} is for --role control-plane, not worker"
        done
    fi
    if [ -n "$WORKERS" ]; then
        echo "$WORKERS" | grep -Eq '^[0-9]+$' || die "--workers: \"$WORKERS\" is not a number"
        names=
        i=1
        while [ "$i" -le "$WORKERS" ]; do
            names="$names${names:+,}worker$i"
            i=$((i + 1))
        done
        if [ -n "$WORKER_NAMES" ]; then
            [ "$(count_items "$WORKER_NAMES")" = "$WORKERS" ] || die "--workers $WORKERS and --worker-names $WORKER_NAMES disagree"
        else
            WORKER_NAMES=$names
        fi
    fi
    if [ -n "$WORKER_NAMES" ]; then
        for n in $(echo "$WORKER_NAMES" | tr ',' ' '); do
            is_name "$n" || die "--worker-names: \"$n\" is not a node name (lowercase letters, digits, '-' and '.')"
        done
        [ -n "$JOIN_DIR" ] || die "--workers/--worker-names need --join-dir DIR (where the workers read their join material)"
    fi
    if [ -n "$WORKER_IPS" ]; then
        [ -n "$WORKER_NAMES" ] || die "--worker-ips needs --workers or --worker-names"
        [ "$(count_items "$WORKER_IPS")" = "$(count_items "$WORKER_NAMES")" ] || die "--worker-ips $WORKER_IPS: one address per worker ($WORKER_NAMES)"
        for ip in $(echo "$WORKER_IPS" | tr ',' ' '); do
            is_ipv4 "$ip" || die "--worker-ips: \"$ip\" is not an IPv4 address"
        done
    fi
    if [ -n "$LOGIN_USER" ]; then
        user_home >/dev/null || die "--user $LOGIN_USER: no such user$([ -n "$ROOT" ] && echo " in $ROOT/etc/passwd")"
    fi
    if [ -n "$ROOT" ]; then
        DO_APT=0
        DO_START=0
    fi
}

# "home uid gid" of --user, from the passwd database (under --root: $ROOT/etc/passwd).
user_home() {
    if [ -n "$ROOT" ]; then
        [ -f "$ROOT/etc/passwd" ] || return 1
        line=$(grep "^$LOGIN_USER:" "$ROOT/etc/passwd") || return 1
    else
        line=$(getent passwd "$LOGIN_USER") || return 1
    fi
    echo "$line" | awk -F: '{ print $6, $3, $4 }'
}

# ---- file helpers ---------------------------------------------------------------------

# Set when put_file installs something.
CHANGED=0

# Install $1 as $2 (mode $3) unless $2 already has that content and mode.
put_file() {
    src=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        if [ "$(stat -c %a "$dest")" = "$mode" ]; then
            note "unchanged $dest"
            return 0
        fi
        chmod "$mode" "$dest" || die "chmod $mode $dest failed"
        note "mode set  $dest"
        return 0
    fi
    mkdir -p "$(dirname "$dest")" || die "mkdir -p $(dirname "$dest") failed"
    # Through a new file renamed over the old one: a running binary is not overwritten.
    cp "$src" "$dest.krs-new" || die "copying $src to $dest failed"
    chmod "$mode" "$dest.krs-new" || die "chmod $mode $dest failed"
    mv -f "$dest.krs-new" "$dest" || die "moving $dest into place failed"
    note "installed $dest"
    CHANGED=1
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/krs-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---- steps ----------------------------------------------------------------------------

check_cgroups() {
    step "checking the cgroup hierarchy ($CGROUP_MOUNT)"
    if [ -f "$CGROUP_MOUNT/cgroup.controllers" ]; then
        note "cgroup v2 (unified): $(cat "$CGROUP_MOUNT/cgroup.controllers")"
    else
        warn "$CGROUP_MOUNT is not a cgroup v2 (unified) hierarchy (no cgroup.controllers): pods get no resource limits on a hybrid or v1 host. Switch with systemd.unified_cgroup_hierarchy=1 on the kernel command line (GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot); Debian 12's default is already unified."
    fi
}

RUNTIME_PACKAGES="iproute2 nftables iptables conntrack procps util-linux mount kmod ca-certificates curl libseccomp2"
BUILD_PACKAGES="build-essential pkg-config libseccomp-dev protobuf-compiler libprotobuf-dev git"

install_packages() {
    if [ $DO_APT = 0 ]; then
        step "Debian packages: skipped (--no-apt$([ -n "$ROOT" ] && echo ", implied by --root"))"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get is missing: this script provisions Debian or Ubuntu (or use --no-apt with the packages installed: $RUNTIME_PACKAGES)"
    packages=$RUNTIME_PACKAGES
    [ -n "$BIN_DIR" ] || packages="$packages $BUILD_PACKAGES"
    step "installing Debian packages: $packages"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # a list of package names
    installed=$(dpkg-query -W -f='${Status}\n' $packages 2>/dev/null | grep -c 'install ok installed' || true)
    if [ "$installed" = "$(echo "$packages" | wc -w)" ]; then
        note "all installed already"
        return 0
    fi
    apt-get update -qq || die "apt-get update failed"
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $packages >/dev/null || die "apt-get install $packages failed"
}

# Whether `cargo` is at least $MIN_RUST.
cargo_recent() {
    v=$(cargo --version 2>/dev/null | awk '{ print $2 }') || return 1
    [ -n "$v" ] || return 1
    [ "$(printf '%s\n%s\n' "$MIN_RUST" "$v" | sort -V | head -n1)" = "$MIN_RUST" ]
}

ensure_rust() {
    step "checking for Rust (cargo $MIN_RUST or newer)"
    [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH" && export PATH
    if cargo_recent; then
        note "$(cargo --version)"
        return 0
    fi
    if command -v cargo >/dev/null; then
        note "$(cargo --version) is too old (Debian's is): installing a toolchain with rustup"
    else
        note "cargo is missing: installing a toolchain with rustup"
    fi
    command -v curl >/dev/null || die "cargo is missing and curl is not installed to fetch rustup (apt-get install curl, or build elsewhere and pass --bin-dir)"
    curl --proto '=https' --tlsv1.2 -fsSL https://sh.rustup.rs -o "$TMP/rustup-init.sh" \
        || die "cargo is missing and rustup could not be fetched from https://sh.rustup.rs (no network?): install Rust $MIN_RUST+ yourself, or build elsewhere and pass --bin-dir DIR"
    sh "$TMP/rustup-init.sh" -y --profile minimal --no-modify-path >/dev/null \
        || die "rustup-init failed: install Rust $MIN_RUST+ yourself, or build elsewhere and pass --bin-dir DIR"
    PATH="$HOME/.cargo/bin:$PATH"
    export PATH
    cargo_recent || die "rustup installed $(cargo --version 2>&1), still not $MIN_RUST+"
    note "$(cargo --version)"
}

build() {
    if [ -n "$BIN_DIR" ]; then
        step "building: skipped, installing the binaries in $BIN_DIR"
        return 0
    fi
    ensure_rust
    step "building the release binaries (cargo build --release in $SRC${CARGO_TARGET_DIR:+, target dir $CARGO_TARGET_DIR}); this takes a while"
    (cd "$SRC" && cargo build --release --locked -p kubelet-rs -p runtime-rs -p apiserver-lite -p cni --bins) \
        || die "cargo build --release failed (see the messages above)"
    BIN_DIR=${CARGO_TARGET_DIR:-$SRC/target}/release
    case $BIN_DIR in /*) ;; *) BIN_DIR=$SRC/$BIN_DIR ;; esac
}

BINARIES="kubelet-rs runtime-rs apiserver-lite krs-proxy"
CNI_PLUGINS="krs-bridge krs-host-local krs-portmap"

# put_binaries FROM CNI_FROM TO CNI_TO: our binaries from FROM into TO, the CNI plugins
# from CNI_FROM into CNI_TO (put_file: changed files only).
put_binaries() {
    for b in $BINARIES; do
        put_file "$1/$b" "$3/$b" 755
    done
    for b in $CNI_PLUGINS; do
        put_file "$2/$b" "$4/$b" 755
    done
}

install_binaries() {
    step "installing the binaries into $ROOT$PREFIX/bin and the CNI plugins into $ROOT/opt/cni/bin"
    for b in $BINARIES $CNI_PLUGINS; do
        [ -f "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (cargo build --release builds it)"
    done
    put_binaries "$BIN_DIR" "$BIN_DIR" "$ROOT$PREFIX/bin" "$ROOT/opt/cni/bin"
    BINARIES_CHANGED=$CHANGED
}

install_kubectl() {
    if [ $DO_KUBECTL = 0 ]; then
        step "kubectl: skipped (--no-kubectl)"
        return 0
    fi
    if [ -x "$ROOT$PREFIX/bin/kubectl" ] || { [ -z "$ROOT" ] && command -v kubectl >/dev/null; }; then
        step "kubectl: present"
        return 0
    fi
    step "kubectl: downloading the official $KUBECTL_MINOR binary (Debian has no kubectl package)"
    arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
    case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
    base=https://dl.k8s.io/release
    if version=$(curl -fsSL "$base/stable-$KUBECTL_MINOR.txt" 2>/dev/null) \
        && curl -fsSL "$base/$version/bin/linux/$arch/kubectl" -o "$TMP/kubectl" \
        && curl -fsSL "$base/$version/bin/linux/$arch/kubectl.sha256" -o "$TMP/kubectl.sha256" \
        && echo "$(cat "$TMP/kubectl.sha256")  $TMP/kubectl" | sha256sum -c --quiet; then
        put_file "$TMP/kubectl" "$ROOT$PREFIX/bin/kubectl" 755
    else
        warn "kubectl could not be fetched from $base (no network?): install kubectl $KUBECTL_MINOR yourself (kubelet-rs does not need it, the walkthrough does)"
    fi
}

# Where a worker keeps its join material.
ETC=/etc/kubelet-rs

install_join_material() {
    name=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
    dir=$JOIN_DIR/$name
    step "installing the join material of node $name from $dir into $ROOT$ETC"
    waited=0
    while [ ! -f "$dir/kubelet.kubeconfig" ] || [ ! -f "$dir/kubelet.crt" ] || [ ! -f "$dir/kubelet.key" ] || [ ! -f "$dir/ca.crt" ]; do
        [ "$waited" -lt "$JOIN_WAIT" ] || die "--join-dir: $dir has no kubelet.kubeconfig, kubelet.crt, kubelet.key and ca.crt (after ${JOIN_WAIT}s): run the control plane's install with --worker-names $name --join-dir $JOIN_DIR first"
        [ "$waited" != 0 ] || note "waiting up to ${JOIN_WAIT}s for the control plane to write it"
        sleep 5
        waited=$((waited + 5))
    done
    put_file "$dir/kubelet.kubeconfig" "$ROOT$ETC/kubelet.kubeconfig" 600
    put_file "$dir/kubelet.crt" "$ROOT$ETC/pki/kubelet.crt" 644
    put_file "$dir/kubelet.key" "$ROOT$ETC/pki/kubelet.key" 600
    put_file "$dir/ca.crt" "$ROOT$ETC/pki/ca.crt" 644
}

# The service's command line (paths as on the installed system).
exec_start() {
    cmd="$PREFIX/bin/kubelet-rs"
    if [ "$ROLE" = control-plane ]; then
        cmd="$cmd --apiserver"
    else
        cmd="$cmd --kubeconfig $ETC/kubelet.kubeconfig --tls-cert-file $ETC/pki/kubelet.crt --tls-private-key-file $ETC/pki/kubelet.key --client-ca-file $ETC/pki/ca.crt --cluster-dns $CLUSTER_DNS"
    fi
    [ "$DATA_DIR" = /var/lib/kubelet-rs ] || cmd="$cmd --data-dir $DATA_DIR"
    [ -z "$NODE_NAME" ] || cmd="$cmd --hostname-override $NODE_NAME"
    [ -z "$NODE_IP" ] || cmd="$cmd --node-ip $NODE_IP"
    [ -z "$POD_CIDR" ] || cmd="$cmd --pod-cidr $POD_CIDR"
    echo "$cmd --cni-bin-dir /opt/cni/bin"
}

UNIT=/etc/systemd/system/kubelet-rs.service
UNIT_CHANGED=0
BINARIES_CHANGED=0

install_unit() {
    step "writing the systemd unit $ROOT$UNIT ($ROLE)"
    cat >"$TMP/unit" <<EOF
# Written by kubelet-rs's scripts/install.sh; a new run rewrites it.
[Unit]
Description=kubelet-rs: a Kubernetes node in Rust ($ROLE)
Documentation=https://github.com/kubelet-rs/kubelet-rs/blob/main/docs/vagrant.md
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=$(exec_start)
Environment=KUBELET_RS_LOG=info
Restart=on-failure
RestartSec=5
# As with the kubelet: stopping or restarting the service stops kubelet-rs alone, pods and
# their monitors keep running and are adopted again at the next start.
KillMode=process
# kubelet-rs manages the cgroups of pods itself.
Delegate=yes
LimitNOFILE=1048576
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
EOF
    CHANGED=0
    put_file "$TMP/unit" "$ROOT$UNIT" 644
    UNIT_CHANGED=$CHANGED
}

start_service() {
    if [ $DO_START = 0 ]; then
        step "starting the service: skipped ($([ -n "$ROOT" ] && echo "--root" || echo "--no-start"))"
        return 0
    fi
    command -v systemctl >/dev/null || die "systemctl is missing: this script needs systemd (or use --no-start and run $(exec_start) yourself)"
    step "enabling and starting kubelet-rs.service"
    was_active=0
    systemctl is-active --quiet kubelet-rs.service && was_active=1
    if [ $UNIT_CHANGED = 1 ]; then
        systemctl daemon-reload || die "systemctl daemon-reload failed"
    fi
    systemctl enable --now kubelet-rs.service || die "systemctl enable --now kubelet-rs failed (journalctl -u kubelet-rs says why)"
    if [ $was_active = 1 ] && { [ $UNIT_CHANGED = 1 ] || [ $BINARIES_CHANGED = 1 ]; }; then
        # New binaries or a new command line take effect at a restart (pods keep running).
        note "the unit or the binaries changed: restarting"
        systemctl restart kubelet-rs.service || die "systemctl restart kubelet-rs failed (journalctl -u kubelet-rs says why)"
    fi
}

ADMIN=

install_kubeconfigs() {
    if [ "$ROLE" = worker ]; then
        step "kubeconfigs: none on a worker (kubectl runs on the control plane)"
        return 0
    fi
    ADMIN=$ROOT$DATA_DIR/admin.kubeconfig
    if [ $DO_START = 1 ]; then
        waited=0
        while [ ! -f "$ADMIN" ]; do
            [ "$waited" -lt 120 ] || die "kubelet-rs did not write $ADMIN in 120 s (journalctl -u kubelet-rs says why)"
            sleep 2
            waited=$((waited + 2))
        done
    fi
    if [ ! -f "$ADMIN" ]; then
        step "kubeconfigs: skipped, $ADMIN does not exist yet (start kubelet-rs, then run this again)"
        ADMIN=
        return 0
    fi
    step "installing the admin kubeconfig for root$([ -n "$LOGIN_USER" ] && echo " and $LOGIN_USER")"
    put_file "$ADMIN" "$ROOT/root/.kube/config" 600
    if [ -n "$LOGIN_USER" ]; then
        # shellcheck disable=SC2046 # "home uid gid"
        set -- $(user_home)
        home=$1 uid=$2 gid=$3
        put_file "$ADMIN" "$ROOT$home/.kube/config" 600
        for p in "$ROOT$home/.kube" "$ROOT$home/.kube/config"; do
            if [ "$(stat -c %u:%g "$p")" != "$uid:$gid" ]; then
                chown "$uid:$gid" "$p" || die "chown $uid:$gid $p failed"
                note "owner set $p ($LOGIN_USER)"
            fi
        done
    fi
}

# The kubectl to use: ours, else the one on PATH.
kubectl_bin() {
    if [ -x "$ROOT$PREFIX/bin/kubectl" ]; then echo "$ROOT$PREFIX/bin/kubectl"; else command -v kubectl; fi
}

wait_ready() {
    [ $DO_START = 1 ] || return 0
    name=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}
    if [ "$ROLE" = worker ]; then
        kubeconfig=$ETC/kubelet.kubeconfig
    else
        kubeconfig=$ADMIN
    fi
    if ! kubectl=$(kubectl_bin); then
        step "waiting for node $name: skipped, no kubectl"
        return 0
    fi
    step "waiting for node $name to be Ready (kubectl get nodes)"
    waited=0
    until [ "$("$kubectl" --kubeconfig "$kubeconfig" get node "$name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; do
        [ "$waited" -lt 300 ] || die "node $name is not Ready after 300 s (journalctl -u kubelet-rs and kubectl describe node $name say why)"
        sleep 3
        waited=$((waited + 3))
    done
    "$kubectl" --kubeconfig "$kubeconfig" get nodes || true
}

write_worker_material() {
    [ "$ROLE" = control-plane ] && [ -n "$WORKER_NAMES" ] || return 0
    api=$ROOT$DATA_DIR/apiserver
    if [ ! -f "$api/pki/ca.crt" ]; then
        step "workers' join material: skipped, the cluster CA ($api/pki/ca.crt) does not exist yet (start kubelet-rs, then run this again)"
        return 0
    fi
    if [ -z "$SERVER" ]; then
        ip=$NODE_IP
        [ -n "$ip" ] || ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
        [ -n "$ip" ] || die "cannot tell the API server's address for the workers: pass --node-ip or --server"
        SERVER=https://$ip:6443
    fi
    step "writing the workers' join material into $JOIN_DIR (server $SERVER)"
    mkdir -p "$JOIN_DIR" || die "mkdir -p $JOIN_DIR failed"
    # The binaries too, so workers can install with --bin-dir instead of building.
    put_binaries "$ROOT$PREFIX/bin" "$ROOT/opt/cni/bin" "$JOIN_DIR/bin" "$JOIN_DIR/bin"
    i=0
    for name in $(echo "$WORKER_NAMES" | tr ',' ' '); do
        i=$((i + 1))
        dir=$JOIN_DIR/$name
        # Kept while issued by this cluster's CA: a new certificate each run would change files.
        if [ -f "$dir/kubelet.kubeconfig" ] && [ -f "$dir/kubelet.crt" ] && [ -f "$dir/kubelet.key" ] \
            && cmp -s "$dir/ca.crt" "$api/pki/ca.crt" && grep -qE "^[[:space:]]*server: \"?$SERVER\"?\$" "$dir/kubelet.kubeconfig"; then
            note "unchanged $dir"
            continue
        fi
        set --
        if [ -n "$WORKER_IPS" ]; then
            set -- --node-address "$(echo "$WORKER_IPS" | cut -d, -f$i)"
        fi
        rm -rf "$TMP/join" && mkdir -p "$TMP/join"
        "$ROOT$PREFIX/bin/apiserver-lite" node-kubeconfig --data-dir "$api" --node "$name" --server "$SERVER" \
            --out "$TMP/join/kubelet.kubeconfig" --serving-cert-dir "$TMP/join" "$@" \
            || die "apiserver-lite node-kubeconfig for worker $name failed"
        { mkdir -p "$dir" && chmod 700 "$dir"; } || die "mkdir $dir failed"
        for f in kubelet.kubeconfig kubelet.crt kubelet.key ca.crt; do
            cp "$TMP/join/$f" "$dir/$f" || die "writing $dir/$f failed"
        done
        chmod 600 "$dir/kubelet.kubeconfig" "$dir/kubelet.key"
        note "wrote     $dir"
    done
}

main() {
    validate
    echo "kubelet-rs install: role $ROLE, into ${ROOT:-/} (prefix $PREFIX)"
    check_cgroups
    install_packages
    build
    install_binaries
    install_kubectl
    [ "$ROLE" = control-plane ] || install_join_material
    install_unit
    start_service
    install_kubeconfigs
    wait_ready
    write_worker_material
    step "done"
}

main
