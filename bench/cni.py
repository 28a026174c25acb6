#!/usr/bin/env python3
"""ADD+DEL latency of a CNI chain (bridge -> host-local IPAM, then portmap with one hostPort),
driven the same way for every plugin set: each plugin is executed as a CNI runtime does, with
the CNI environment and its configuration on stdin, the previous result chained in.

Runs inside the network namespace it is started in (bench/cni.sh starts it in a namespace of its
own, so the bridge and the port-mapping rules never touch the host's). Pod namespaces are made
with `ip netns add` outside the timed part.

Usage: cni.py NAME=DIR:BRIDGE:HOSTLOCAL:PORTMAP[:EXTRA_PORTMAP_JSON] ... --runs N
Prints one JSON object per plugin set: ADD and DEL times (ms) of every round.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def run_plugin(path, command, conf, container_id, netns, cni_path):
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path,
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=" + container_id,
    }
    p = subprocess.run([path], input=json.dumps(conf).encode(), env=env, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"{path} {command} failed ({p.returncode}): {p.stdout.decode()} {p.stderr.decode()}")
    return json.loads(p.stdout) if p.stdout.strip() else None


def chain(spec, data_dir, round_no):
    name, rest = spec.split("=", 1)
    parts = rest.split(":", 4)
    bin_dir, bridge, host_local, portmap = parts[:4]
    extra = json.loads(parts[4]) if len(parts) > 4 else {}
    bridge_conf = {
        "cniVersion": "1.0.0",
        "name": "krsbench",
        "type": bridge,
        "bridge": "krsbench0",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {"type": host_local, "ranges": [[{"subnet": "10.240.0.0/16"}]], "dataDir": data_dir},
    }
    portmap_conf = {
        "cniVersion": "1.0.0",
        "name": "krsbench",
        "type": portmap,
        "capabilities": {"portMappings": True},
        "runtimeConfig": {"portMappings": [{"hostPort": 20000 + round_no, "containerPort": 80, "protocol": "tcp"}]},
        **extra,
    }
    return name, bin_dir, [(os.path.join(bin_dir, bridge), bridge_conf), (os.path.join(bin_dir, portmap), portmap_conf)]


def one_round(spec, data_dir, round_no):
    name, bin_dir, plugins = chain(spec, data_dir, round_no)
    ns = f"krs-bench-{os.getpid()}-{round_no}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        netns = f"/run/netns/{ns}"
        cid = f"bench{round_no}"
        t0 = time.perf_counter()
        prev = None
        for path, conf in plugins:
            if prev is not None:
                conf = {**conf, "prevResult": prev}
            prev = run_plugin(path, "ADD", conf, cid, netns, bin_dir)
        t1 = time.perf_counter()
        for path, conf in reversed(plugins):
            run_plugin(path, "DEL", {**conf, "prevResult": prev}, cid, netns, bin_dir)
        t2 = time.perf_counter()
        return name, (t1 - t0) * 1000, (t2 - t1) * 1000
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    results = {s.split("=", 1)[0]: {"add": [], "del": []} for s in args.sets}
    with tempfile.TemporaryDirectory(prefix="krs-bench-cni-") as data_dir:
        # Warm-up round per set (first bridge creation, first nft table), not counted.
        for s in args.sets:
            one_round(s, data_dir, 0)
        for r in range(1, args.runs + 1):
            for s in args.sets:  # interleaved, so drift hits every set alike
                name, add_ms, del_ms = one_round(s, data_dir, r)
                results[name]["add"].append(add_ms)
                results[name]["del"].append(del_ms)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
