#!/usr/bin/env python3
"""Timing driver for bench/lifecycle.sh.

It expects what lifecycle.sh sets up: a private mount namespace whose /sys/fs/cgroup is a
cgroup2 directory the script created, a tmpfs for the runtimes' state, and a busybox rootfs.
Run by hand only in such a namespace; lifecycle.sh also does the cleanup this file cannot
(the cgroup and the work directory).

For every case (runtime x bundle variant) it measures, round-robin so that drift on the host
hits every case alike:
  lifecycle: `create --pid-file`, `start`, wait for the container's init to exit, `delete`
  run:       `run` in the foreground, until the runtime exits
and for the floor, `unshare --pid --mount --net --uts --ipc --fork /bin/true`.

Wall time is taken with perf_counter_ns around spawning and reaping the commands, and CPU
time from the rusage wait4() returns. Memory is measured in separate rounds, after the timed
ones, under GNU time (`time -f %M`): the maximum resident set of the runtime process over
every image it executed (runtime-rs re-executes itself from a sealed memfd: same pid, so
included) and of any descendant it reaped itself (for `run`, its container). We cannot take
ru_maxrss from our own wait4(): exec() records the high-water mark of the image it replaces,
and a child forked from this Python process starts with Python's ~16 MiB. GNU time's child
starts from GNU time's small image instead (`time -f %M /bin/true` reports ~1 MiB on Debian
12, which bounds that error).

We are a child subreaper, so a container init orphaned by `create` is reparented to us and
"wait" is a plain waitpid(), like a containerd shim does.
"""

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36

VARIANTS = {
    "default": "the runtime's default spec (devices: deny all, then the runtime's defaults)",
    "nodev": "default spec without linux.resources.devices (no explicit deny rule)",
}


class CommandFailed(Exception):
    def __init__(self, what, code, stderr):
        lines = [l for l in stderr.splitlines() if l.strip()]
        detail = lines[-1] if lines else "(no stderr)"
        super().__init__(f"{what} exited with {code}: {detail}")


class Spawner:
    """Runs commands with stdin/stdout on /dev/null and stderr in a log we can show."""

    def __init__(self, log_path, gnu_time):
        self.gnu_time = gnu_time
        self.time_out = log_path + ".time"
        self.devnull = os.open(os.devnull, os.O_RDWR)
        # O_APPEND so that truncating between commands needs no seek in the shared description.
        self.log = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self.log_path = log_path

    def clear_log(self):
        os.ftruncate(self.log, 0)

    def read_log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def run(self, argv):
        """Run argv to completion; return (exit code, rusage)."""
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, self.devnull, 1),
                (os.POSIX_SPAWN_DUP2, self.log, 2),
            ],
        )
        _, status, rusage = os.wait4(pid, 0)
        return os.waitstatus_to_exitcode(status), rusage

    def check(self, what, argv):
        code, rusage = self.run(argv)
        if code != 0:
            raise CommandFailed(what, code, self.read_log())
        return rusage

    def check_rss(self, what, argv):
        """Run argv under GNU time; return its maximum resident set in KiB."""
        code, _ = self.run([self.gnu_time, "-f", "%M", "-o", self.time_out, *argv])
        if code != 0:
            raise CommandFailed(what, code, self.read_log())
        with open(self.time_out) as f:
            return int(f.read().split()[-1])


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_strays():
    """Reap orphans reparented to us (intermediate processes of the runtimes)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_container(pid):
    """Wait until the container's init is gone; returns how ("waitpid" or "poll")."""
    try:
        os.waitpid(pid, 0)
        return "waitpid"
    except ChildProcessError:
        pass
    # Not our child (a runtime that keeps its own monitor): poll /proc.
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "poll"
        if state in ("Z", "X"):
            return "poll"
        time.sleep(0.0001)


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except OSError as e:
        return f"? ({e})"
    return out.splitlines()[0] if out else "?"


class Case:
    def __init__(self, name, binary, variant, bundle, state, version):
        self.name = name
        self.binary = binary
        self.variant = variant
        self.bundle = bundle
        self.state = state
        self.version = version
        self.key = f"{name}-{variant}"
        self.error = None
        self.lifecycle_ns = []
        self.run_ns = []
        self.run_rss = []
        self.lifecycle_rss = []
        self.run_cpu_ns = []
        self.lifecycle_cpu_ns = []
        self.wait_methods = set()
        self.live = set()

    def cmd(self, *args):
        return [self.binary, "--root", self.state, *args]

    def lifecycle(self, sp, cid, record):
        pid_file = os.path.join(self.state, f"{cid}.pid")
        sp.clear_log()
        self.live.add(cid)
        t0 = time.perf_counter_ns()
        ru_c = sp.check("create", self.cmd("create", "--bundle", self.bundle, "--pid-file", pid_file, cid))
        with open(pid_file) as f:
            pid = int(f.read())
        ru_s = sp.check("start", self.cmd("start", cid))
        how = wait_container(pid)
        ru_d = sp.check("delete", self.cmd("delete", cid))
        t1 = time.perf_counter_ns()
        self.live.discard(cid)
        os.unlink(pid_file)
        reap_strays()
        self.wait_methods.add(how)
        if record:
            self.lifecycle_ns.append(t1 - t0)
            self.lifecycle_cpu_ns.append(sum(cpu_ns(r) for r in (ru_c, ru_s, ru_d)))

    def run(self, sp, cid, record):
        sp.clear_log()
        self.live.add(cid)
        t0 = time.perf_counter_ns()
        ru = sp.check("run", self.cmd("run", "--bundle", self.bundle, cid))
        t1 = time.perf_counter_ns()
        self.live.discard(cid)
        reap_strays()
        if record:
            self.run_ns.append(t1 - t0)
            self.run_cpu_ns.append(cpu_ns(ru))

    def measure_rss(self, sp, cid):
        pid_file = os.path.join(self.state, f"{cid}.pid")
        sp.clear_log()
        self.live.add(cid + "-l")
        rss = [sp.check_rss("create", self.cmd("create", "--bundle", self.bundle, "--pid-file", pid_file, cid + "-l"))]
        with open(pid_file) as f:
            pid = int(f.read())
        rss.append(sp.check_rss("start", self.cmd("start", cid + "-l")))
        wait_container(pid)
        rss.append(sp.check_rss("delete", self.cmd("delete", cid + "-l")))
        self.live.discard(cid + "-l")
        os.unlink(pid_file)
        self.lifecycle_rss.append(max(rss))
        self.live.add(cid + "-r")
        self.run_rss.append(sp.check_rss("run", self.cmd("run", "--bundle", self.bundle, cid + "-r")))
        self.live.discard(cid + "-r")
        reap_strays()

    def force_delete(self, sp):
        for cid in sorted(self.live):
            code, _ = sp.run(self.cmd("delete", "--force", cid))
            if code != 0:
                print(f"warning: {self.name} delete --force {cid} exited with {code}", file=sys.stderr)
        self.live.clear()
        reap_strays()


class Floor:
    """unshare with the namespaces of the default spec, running the host's /bin/true."""

    def __init__(self, unshare, true):
        self.name = "unshare (floor)"
        self.variant = "-"
        self.version = first_line([unshare, "--version"])
        self.argv = [unshare, "--pid", "--mount", "--net", "--uts", "--ipc", "--fork", true]
        self.key = "floor"
        self.error = None
        self.lifecycle_ns = []
        self.lifecycle_rss = []
        self.lifecycle_cpu_ns = []
        self.run_ns = []
        self.run_rss = []
        self.run_cpu_ns = []
        self.wait_methods = set()

    def lifecycle(self, sp, cid, record):
        pass

    def run(self, sp, cid, record):
        sp.clear_log()
        t0 = time.perf_counter_ns()
        ru = sp.check("unshare", self.argv)
        t1 = time.perf_counter_ns()
        if record:
            self.run_ns.append(t1 - t0)
            self.run_cpu_ns.append(cpu_ns(ru))

    def measure_rss(self, sp, cid):
        self.run_rss.append(sp.check_rss("unshare", self.argv))

    def force_delete(self, sp):
        pass


def cpu_ns(ru):
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def base_spec(runtimes, workdir):
    """Default spec from `runtime-rs spec`, falling back to `runc spec` if that fails."""
    for name in ("runtime-rs", "runc"):
        if name not in runtimes:
            continue
        d = tempfile.mkdtemp(prefix="krs-bench-spec-", dir=workdir)
        proc = subprocess.run([runtimes[name], "spec"], cwd=d, capture_output=True, text=True)
        path = os.path.join(d, "config.json")
        if proc.returncode == 0 and os.path.exists(path):
            with open(path) as f:
                return json.load(f), f"`{name} spec`"
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[0]
        print(f"note: `{name} spec` failed ({why}); trying the next runtime", file=sys.stderr)
    sys.exit("error: no runtime produced a default spec")


def write_bundle(spec, rootfs, bundles_dir, key, variant):
    spec = json.loads(json.dumps(spec))
    # crun 1.8.1 accepts only 1.0.x ("unknown version specified" for the 1.2.0 that
    # `runtime-rs spec` writes); nothing in this bundle needs a later version.
    spec["ociVersion"] = "1.0.2"
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["root"] = {"path": rootfs, "readonly": True}
    linux = spec.setdefault("linux", {})
    linux["cgroupsPath"] = f"/bench/krs-bench-{key}"
    if variant == "nodev":
        linux.get("resources", {}).pop("devices", None)
    d = os.path.join(bundles_dir, key)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(spec, f, indent=2)
    return d


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def ms(ns):
    return f"{ns / 1e6:.1f}"


def timing_cell(values):
    if not values:
        return "-"
    return f"{ms(statistics.median(values))} ({ms(pct(values, 10))}–{ms(pct(values, 90))})"


def rss_cell(values):
    if not values:
        return "-"
    return f"{max(values) / 1024:.1f}"


def markdown(cases, args):
    out = []
    out.append(
        "| runtime | version | bundle | create+start+wait+delete, ms median (p10–p90) "
        "| run, ms median (p10–p90) | peak RSS run, MiB | peak RSS create/start/delete, MiB "
        "| CPU user+sys run, ms median |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for c in cases:
        if c.error:
            out.append(f"| {c.name} | {c.version} | {c.variant} | failed: {c.error} | | | | |")
            continue
        cpu = ms(statistics.median(c.run_cpu_ns)) if c.run_cpu_ns else "-"
        out.append(
            f"| {c.name} | {c.version} | {c.variant} | {timing_cell(c.lifecycle_ns)} "
            f"| {timing_cell(c.run_ns)} | {rss_cell(c.run_rss)} | {rss_cell(c.lifecycle_rss)} | {cpu} |"
        )
    return "\n".join(out)


def leftover_cgroups():
    root = "/sys/fs/cgroup/bench"
    if not os.path.isdir(root):
        return []
    return sorted(e.name for e in os.scandir(root) if e.is_dir())


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime", action="append", default=[], metavar="NAME=PATH", required=True)
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    p.add_argument("--rootfs", required=True)
    p.add_argument("--workdir", required=True, help="bundles go here")
    p.add_argument("--state", required=True, help="tmpfs for the runtimes' --root")
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--pause-ms", type=float, default=0,
                   help="idle time before each timed lifecycle or run (0: back to back)")
    p.add_argument("--rss-runs", type=int, default=10, help="rounds under GNU time for memory")
    p.add_argument("--gnu-time", default="/usr/bin/time")
    p.add_argument("--version-suffix", action="append", default=[], metavar="NAME=TEXT")
    p.add_argument("--json", help="write raw samples here")
    return p.parse_args()


def main():
    args = parse_args()
    # lifecycle.sh stops us with SIGTERM; unwind so that containers get deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    variants = args.variant or ["default", "nodev"]
    runtimes = dict(r.split("=", 1) for r in args.runtime)
    suffixes = dict(s.split("=", 1) for s in args.version_suffix)
    become_subreaper()
    sp = Spawner(os.path.join(args.state, "stderr.log"), args.gnu_time)

    spec, spec_source = base_spec(runtimes, args.workdir)
    bundles_dir = os.path.join(args.workdir, "bundles")
    cases = []
    for name, binary in runtimes.items():
        version = first_line([binary, "--version"]) + suffixes.get(name, "")
        state = os.path.join(args.state, name)
        os.makedirs(state, exist_ok=True)
        for variant in variants:
            case = Case(name, binary, variant, None, state, version)
            case.bundle = write_bundle(spec, args.rootfs, bundles_dir, case.key, variant)
            cases.append(case)
    cases.append(Floor(shutil.which("unshare"), shutil.which("true")))

    try:
        # Probe: a case that cannot run here is reported, not fatal.
        for c in cases:
            try:
                c.run(sp, f"krs-bench-{c.key}-probe-r", False)
                c.lifecycle(sp, f"krs-bench-{c.key}-probe-l", False)
            except CommandFailed as e:
                c.error = str(e)
                c.force_delete(sp)
                print(f"{c.name} ({c.variant}): {e}", file=sys.stderr)
        active = [c for c in cases if not c.error]
        load_before = os.getloadavg()
        started = time.time()
        pause = args.pause_ms / 1000
        for i in range(args.warmup + args.runs):
            record = i >= args.warmup
            k = i % len(active)
            for c in active[k:] + active[:k]:
                time.sleep(pause)
                c.lifecycle(sp, f"krs-bench-{c.key}-{i}-l", record)
                time.sleep(pause)
                c.run(sp, f"krs-bench-{c.key}-{i}-r", record)
        elapsed = time.time() - started
        for i in range(args.rss_runs):
            for c in active:
                c.measure_rss(sp, f"krs-bench-{c.key}-{i}-m")
    finally:
        for c in cases:
            c.force_delete(sp)

    left = leftover_cgroups()
    print(f"spec: {spec_source}; /bin/true from busybox-static; root read-only; terminal false")
    print(f"runs: {args.runs} timed per case after {args.warmup} warm-up rounds, cases interleaved "
          f"({elapsed:.0f} s), {args.pause_ms:g} ms idle before each; "
          f"then {args.rss_runs} rounds under GNU time for peak RSS")
    print(f"host: {platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs, "
          f"load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}")
    for v in variants:
        print(f"bundle {v}: {VARIANTS[v]}")
    for c in cases:
        if c.wait_methods - {"waitpid"}:
            print(f"note: {c.name} container init was not reparented to us; waited by polling /proc")
    if left:
        failed = {f"krs-bench-{c.key}" for c in cases if c.error}
        print("note: cgroups left under /bench: "
              + ", ".join(f"{l} (failed probe)" if l in failed else l for l in left))
    print()
    print(markdown(cases, args))

    if args.json:
        data = {
            "spec_source": spec_source,
            "runs": args.runs,
            "warmup": args.warmup,
            "rss_runs": args.rss_runs,
            "pause_ms": args.pause_ms,
            "kernel": platform.release(),
            "cases": [
                {
                    "runtime": c.name,
                    "version": c.version,
                    "bundle": c.variant,
                    "error": c.error,
                    "lifecycle_ns": c.lifecycle_ns,
                    "run_ns": c.run_ns,
                    "lifecycle_maxrss_kib": c.lifecycle_rss,
                    "run_maxrss_kib": c.run_rss,
                    "lifecycle_cpu_ns": c.lifecycle_cpu_ns,
                    "run_cpu_ns": c.run_cpu_ns,
                }
                for c in cases
            ],
        }
        with open(args.json, "w") as f:
            json.dump(data, f)


if __name__ == "__main__":
    main()
