//! The device controller: the eBPF program attached to each container's cgroup allows the
//! standard devices and what `linux.resources.devices` and `linux.devices` allow, and
//! nothing else. Root-only: run through scripts/test as root.
//!
//! Probes open device nodes the container makes itself (it gets CAP_MKNOD; mknod of any
//! node is allowed, as with runc). Numbers no driver registered (majors 3000-3003 here) make
//! a clean test: an open the program allows fails with ENXIO ("No such device or
//! address") in the driver lookup, one it denies fails with EPERM before that. No real
//! device is read or written except /dev/null, zero, full, random, urandom, tty and ptmx
//! (tun is only opened, which creates no interface).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_support::{require_root, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// Shell functions for the container: `probe PATH r|w` opens PATH for reading (without
/// reading) or writes a line to it, and prints `PATH r allowed` or `PATH r denied` (denied
/// means EPERM; any other error happens after the program allowed the open).
const PROBE: &str = r#"
probe() {
  if [ "$2" = r ]; then out=$( (: < "$1") 2>&1 ); else out=$( (echo x > "$1") 2>&1 ); fi
  case "$out" in *"not permitted"*) echo "$1 $2 denied";; *) echo "$1 $2 allowed";; esac
}
"#;

/// A bundle running `script` after [`PROBE`], with CAP_MKNOD and these device rules (`None`:
/// no `linux.resources` at all).
fn bundle(cg: &CgroupParent, id: &str, rules: Option<Value>, script: &str) -> Bundle {
    let full = format!("{PROBE}\n{script}");
    let mut b = Bundle::busybox(&["sh", "-c", &full], &cg.child(id));
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
    }
    if let Some(rules) = rules {
        b.config["linux"]["resources"] = json!({ "devices": rules });
    }
    b.write();
    b
}

/// The probe lines of the output, sorted, for comparison.
fn lines(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out.lines().filter(|l| l.ends_with(" allowed") || l.ends_with(" denied")).map(str::to_string).collect();
    v.sort();
    v
}

fn want(expected: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root"]
fn default_rules_allow_the_standard_devices_and_deny_the_rest() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // What `runtime-rs spec` writes: deny everything, then the defaults apply.
    let b = bundle(
        &cg,
        "std",
        Some(json!([{"allow": false, "access": "rwm"}])),
        "for d in null zero random urandom ptmx; do probe /dev/$d r; done
         probe /dev/null w; probe /dev/full w; probe /dev/ptmx w
         echo full: $( (echo x > /dev/full) 2>&1 | grep -o 'No space left on device')
         echo tty: $(head -c1 /dev/tty 2>&1 | grep -o 'No such device or address')
         mknod /dev/mem c 1 1 && echo mknod-ok
         mknod /dev/x c 3000 1; mknod /dev/full2 c 1 7; mknod /dev/tun c 10 200
         probe /dev/mem r; probe /dev/x r; probe /dev/x w; probe /dev/full2 w; probe /dev/tun r",
    );
    let out = rt.run_ok(&b, "std");
    assert_eq!(
        lines(&out),
        want(&[
            "/dev/null r allowed", "/dev/zero r allowed", "/dev/random r allowed", "/dev/urandom r allowed",
            "/dev/ptmx r allowed", "/dev/null w allowed", "/dev/full w allowed", "/dev/ptmx w allowed",
            "/dev/mem r denied", "/dev/x r denied", "/dev/x w denied",
            // A node the container makes of an allowed device works: /dev is not nodev, so
            // the denials above are the program's.
            "/dev/full2 w allowed",
            // tun/tap, as runc allows it again since 1.2.4
            "/dev/tun r allowed",
        ]),
        "{out}"
    );
    // /dev/full's own error and /dev/tty's (no controlling terminal) show the opens passed.
    assert!(out.contains("full: No space left on device\n"), "{out}");
    assert!(out.contains("tty: No such device or address\n"), "{out}");
    assert!(out.contains("mknod-ok\n"), "mknod of any node is allowed, as with runc: {out}");
}

#[test]
#[ignore = "needs root"]
fn a_spec_without_device_rules_gets_the_defaults_only() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, "none", None, "mknod /dev/x c 3000 1; probe /dev/x r; probe /dev/null w; probe /dev/zero r");
    let out = rt.run_ok(&b, "none");
    assert_eq!(lines(&out), want(&["/dev/x r denied", "/dev/null w allowed", "/dev/zero r allowed"]), "{out}");
}

#[test]
#[ignore = "needs root"]
fn explicit_rules_wildcards_and_access_subsets() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let rules = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 3000, "minor": 1, "access": "r"},
        {"allow": true, "type": "c", "major": 3001, "access": "rw"},
        {"allow": false, "type": "c", "major": 3001, "minor": 7, "access": "w"},
        {"allow": true, "minor": 5, "access": "w"},
        {"allow": true, "type": "c", "major": 3002, "minor": 0, "access": "rw"}
    ]);
    let b = bundle(
        &cg,
        "explicit",
        Some(rules),
        "mknod /dev/a c 3000 1; mknod /dev/b c 3001 9; mknod /dev/c c 3001 7; mknod /dev/d c 3003 5
         mknod /dev/e b 3002 0; mknod /dev/f c 3002 0; mknod /dev/g c 3000 2
         for n in a b c d e f g; do probe /dev/$n r; probe /dev/$n w; done",
    );
    let out = rt.run_ok(&b, "explicit");
    assert_eq!(
        lines(&out),
        want(&[
            // read only
            "/dev/a r allowed", "/dev/a w denied",
            // a wildcard minor
            "/dev/b r allowed", "/dev/b w allowed",
            // a later deny punches a hole in the wildcard, for writing only
            "/dev/c r allowed", "/dev/c w denied",
            // type and major left out: any device with minor 5, for writing
            "/dev/d r denied", "/dev/d w allowed",
            // the type counts: the block device with the char device's numbers is denied
            "/dev/e r denied", "/dev/e w denied",
            "/dev/f r allowed", "/dev/f w allowed",
            // a minor no rule names
            "/dev/g r denied", "/dev/g w denied",
        ]),
        "{out}"
    );
}

#[test]
#[ignore = "needs root"]
fn allow_all_then_deny_some() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let rules = json!([
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 3000, "access": "rwm"}
    ]);
    let b = bundle(&cg, "allowall", Some(rules), "mknod /dev/a c 3000 1; mknod /dev/b c 3001 1; probe /dev/a r; probe /dev/b r; probe /dev/null w");
    let out = rt.run_ok(&b, "allowall");
    assert_eq!(lines(&out), want(&["/dev/a r denied", "/dev/b r allowed", "/dev/null w allowed"]), "{out}");
}

#[test]
#[ignore = "needs root"]
fn spec_devices_are_allowed_and_bad_rules_are_refused_by_field() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = bundle(&cg, "specdev", Some(json!([{"allow": false, "access": "rwm"}])), "probe /dev/krs r; probe /dev/krs w");
    b.config["linux"]["devices"] = json!([{"path": "/dev/krs", "type": "c", "major": 3000, "minor": 3, "fileMode": 438}]);
    b.write();
    let out = rt.run_ok(&b, "specdev");
    assert_eq!(lines(&out), want(&["/dev/krs r allowed", "/dev/krs w allowed"]), "{out}");

    b.config["linux"]["resources"]["devices"] = json!([{"allow": true, "type": "c", "major": 1, "access": "rwx"}]);
    b.write();
    let err = rt.fails(&["run", "--bundle", b.path().to_str().unwrap(), "bad"]);
    assert!(err.contains("linux.resources.devices[0].access: 'x' is not an access"), "{err}");
    rt.assert_gone("bad", &cg);
}

/// `BPF_PROG_QUERY` on a cgroup directory: the ids of the device programs attached to it.
/// Written against libc here, independently of the runtime's code.
fn attached_programs(cgroup: &Path) -> io::Result<Vec<u32>> {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Query {
        target_fd: u32,
        attach_type: u32,
        query_flags: u32,
        attach_flags: u32,
        prog_ids: u64,
        prog_cnt: u32,
        pad: u32,
    }
    let dir = fs::File::open(cgroup)?;
    let mut ids = [0u32; 16];
    let mut q = Query { target_fd: dir.as_raw_fd() as u32, attach_type: 6, query_flags: 0, attach_flags: 0, prog_ids: ids.as_mut_ptr() as u64, prog_cnt: 16, pad: 0 };
    let ret = unsafe { libc::syscall(libc::SYS_bpf, 16, &mut q as *mut Query, std::mem::size_of::<Query>() as u32) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ids[..q.prog_cnt as usize].to_vec())
}

/// Whether a BPF program with this id still exists (`BPF_PROG_GET_FD_BY_ID`).
fn program_exists(id: u32) -> bool {
    let mut attr = [id, 0, 0];
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 13, attr.as_mut_ptr(), 12u32) };
    if fd >= 0 {
        unsafe { libc::close(fd as i32) };
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}

#[test]
#[ignore = "needs root"]
fn one_program_per_container_replaced_in_place_and_gone_after_delete() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = bundle(&cg, "life", Some(json!([{"allow": false, "access": "rwm"}])), "mknod /dev/x c 3000 1; sleep 1000");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), "life"]);
    // In place once create returns, before the user's program runs.
    let dir = cg.path.join("life");
    let before = attached_programs(&dir).unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    rt.ok(&["start", "life"]);

    // An exec'd process is under the same program.
    let probe = format!("{PROBE}\nprobe /dev/x r; probe /dev/null w");
    let out = rt.ok(&["exec", "life", "sh", "-c", &probe]);
    assert_eq!(lines(&out), want(&["/dev/x r denied", "/dev/null w allowed"]), "{out}");

    // What `update` uses: the new rules take over and the old program is detached.
    use runtime_rs::cgroups::devices::{container_rules, replace, Access, Bpf, DeviceRule, DeviceType};
    let rules = container_rules(
        vec![
            DeviceRule { allow: false, kind: None, major: None, minor: None, access: Access::ALL },
            DeviceRule::allow(Some(DeviceType::Char), Some(3000), None, Access::READ),
        ],
        &[],
    );
    replace(&Bpf, &dir, &rules).unwrap();
    let after = attached_programs(&dir).unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    assert!(!program_exists(before[0]), "the replaced program is freed");
    let out = rt.ok(&["exec", "life", "sh", "-c", &probe]);
    assert_eq!(lines(&out), want(&["/dev/x r allowed", "/dev/null w allowed"]), "{out}");

    rt.ok(&["delete", "--force", "life"]);
    rt.assert_gone("life", &cg);
    // The kernel frees a removed cgroup's programs shortly after.
    let start = Instant::now();
    while program_exists(after[0]) {
        assert!(start.elapsed() < Duration::from_secs(10), "program {} outlived its cgroup", after[0]);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root"]
fn a_refused_program_reports_the_verifier_log() {
    require_root();
    use runtime_rs::cgroups::devices::{Bpf, DeviceKernel, Insn};
    // r0 is never set: the verifier refuses to let it be returned.
    let err = Bpf.load(&[Insn::Exit]).err().expect("the verifier refuses a program that returns an unset r0");
    assert_eq!(err.source.raw_os_error(), Some(libc::EACCES), "{:?}", err.source);
    assert!(err.log.contains("R0 !read_ok"), "{}", err.log);
}

#[test]
#[ignore = "needs root"]
fn without_cap_sys_admin_and_cap_bpf_the_error_says_so() {
    require_root();
    let cg = CgroupParent::new();
    // Capabilities are per thread: drop them in a thread of our own.
    let path = cg.path.clone();
    let err = std::thread::spawn(move || {
        for cap in [caps::Capability::CAP_SYS_ADMIN, caps::Capability::CAP_BPF] {
            caps::drop(None, caps::CapSet::Effective, cap).unwrap();
        }
        let rules = runtime_rs::cgroups::devices::container_rules(vec![], &[]);
        runtime_rs::cgroups::devices::replace(&runtime_rs::cgroups::devices::Bpf, &path, &rules).unwrap_err().to_string()
    })
    .join()
    .unwrap();
    assert!(err.contains("refused (EPERM)") && err.contains("CAP_SYS_ADMIN"), "{err}");
    assert!(attached_programs(&cg.path).unwrap().is_empty());
}
