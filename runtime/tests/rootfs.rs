//! The container's root filesystem: masked and read-only paths, a read-only root, bind and
//! tmpfs mounts, devices and /dev links, sysctls, root propagation, --no-pivot.
//! Root-only: run through scripts/test as root.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use test_support::{mounts_under, require_root, text, Bundle, CgroupParent, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_runtime-rs");

/// The line of /proc/self/mounts (as the container printed it) whose mount point is `dest`.
fn mount_line<'a>(mounts: &'a str, dest: &str) -> &'a str {
    mounts
        .lines()
        .filter(|l| l.split(' ').nth(1) == Some(dest))
        .last()
        .unwrap_or_else(|| panic!("no mount at {dest} in:\n{mounts}"))
}

fn options_of(line: &str) -> Vec<&str> {
    line.split(' ').nth(3).unwrap().split(',').collect()
}

#[test]
#[ignore = "needs root"]
fn masked_paths_hide_files_and_directories() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // Default masked paths that exist here and are not empty on the host, plus a file and a
    // directory of the image. This kernel is built without /proc/kcore (CONFIG_PROC_KCORE),
    // so masking that one cannot be observed here; /proc/timer_list is masked the same way.
    for p in ["/proc/timer_list", "/proc/keys", "/sys/firmware"] {
        assert!(Path::new(p).exists(), "{p} exists on this host");
    }
    assert!(fs::read_dir("/sys/firmware").unwrap().next().is_some());
    let mut b = Bundle::busybox(
        &[
            "sh",
            "-c",
            "for f in /proc/timer_list /proc/keys /etc/secret-file; do echo $f=$(cat $f | wc -c); done; \
             for d in /sys/firmware /secret; do echo $d=$(ls -A $d | wc -l); done; \
             touch /secret/new 2>/dev/null && echo dir-writable || echo dir-readonly; \
             echo x > /etc/secret-file 2>/dev/null; cat /etc/secret-file | wc -c",
        ],
        &cg.child("mask"),
    );
    fs::create_dir(b.rootfs().join("secret")).unwrap();
    fs::write(b.rootfs().join("secret/token"), "s3cr3t\n").unwrap();
    fs::write(b.rootfs().join("etc/secret-file"), "password\n").unwrap();
    let masked = b.config["linux"]["maskedPaths"].as_array_mut().unwrap();
    masked.push(json!("/secret"));
    masked.push(json!("/etc/secret-file"));
    masked.push(json!("/does/not/exist"));
    b.write();
    let out = rt.run_ok(&b, "mask");
    assert_eq!(
        out,
        "/proc/timer_list=0\n/proc/keys=0\n/etc/secret-file=0\n/sys/firmware=0\n/secret=0\ndir-readonly\n0\n"
    );
    // Masking hides; it does not change the image.
    assert_eq!(fs::read_to_string(b.rootfs().join("secret/token")).unwrap(), "s3cr3t\n");
    assert_eq!(fs::read_to_string(b.rootfs().join("etc/secret-file")).unwrap(), "password\n");
    assert!(!b.rootfs().join("does").exists(), "a masked path that does not exist is not created");

    // The same script without masks sees everything: the checks above do detect a mask.
    let mut b2 = Bundle::busybox(&["sh", "-c", "cat /proc/timer_list | wc -c; ls -A /sys/firmware | wc -l"], &cg.child("nomask"));
    b2.config["linux"]["maskedPaths"] = json!([]);
    b2.write();
    let out = rt.run_ok(&b2, "nomask");
    assert!(out.lines().all(|l| l.trim() != "0"), "{out}");
}

#[test]
#[ignore = "needs root"]
fn readonly_paths_refuse_writes_with_erofs() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let host_domain = fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    // The container has its own UTS namespace, so only the read-only bind stops this write.
    let b = Bundle::busybox(&["sh", "-c", "echo evil > /proc/sys/kernel/domainname"], &cg.child("ro"));
    let out = rt.run_bundle(&b, "ro");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Read-only file system"), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string("/proc/sys/kernel/domainname").unwrap(), host_domain);
    // Without the read-only path, the same write works (in the container's UTS namespace).
    let mut b = Bundle::busybox(&["sh", "-c", "echo fine > /proc/sys/kernel/domainname && cat /proc/sys/kernel/domainname"], &cg.child("rw"));
    b.config["linux"]["readonlyPaths"].as_array_mut().unwrap().retain(|p| p != "/proc/sys");
    b.write();
    assert_eq!(rt.run_ok(&b, "rw"), "fine\n");
    assert_eq!(fs::read_to_string("/proc/sys/kernel/domainname").unwrap(), host_domain);
}

#[test]
#[ignore = "needs root"]
fn readonly_root_refuses_writes() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(&["touch", "/created"], &cg.child("roroot"));
    let out = rt.run_bundle(&b, "roroot");
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("Read-only file system"), "{}", text(&out.stderr));
    assert!(!b.rootfs().join("created").exists());

    let mut b = Bundle::busybox(&["touch", "/created"], &cg.child("rwroot"));
    b.config["root"]["readonly"] = json!(false);
    b.write();
    rt.run_ok(&b, "rwroot");
    assert!(b.rootfs().join("created").exists());
}

#[test]
#[ignore = "needs root"]
fn bind_mounts_read_write_and_read_only() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let rw = tempfile::Builder::new().prefix("krs-test-rw-").tempdir().unwrap();
    let ro = tempfile::Builder::new().prefix("krs-test-ro-").tempdir().unwrap();
    fs::write(ro.path().join("hello"), "from host\n").unwrap();
    let mut b = Bundle::busybox(
        &[
            "sh",
            "-c",
            "cat /data-ro/hello; echo written > /data-rw/from-container && echo rw-ok; \
             echo x > /data-ro/nope 2>/dev/null || echo ro-refused; cat /proc/self/mounts",
        ],
        &cg.child("bind"),
    );
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data-rw", "type": "bind", "source": rw.path(), "options": ["rbind", "rw"]}));
    mounts.push(json!({"destination": "/data-ro", "type": "bind", "source": ro.path(), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    b.write();
    let out = rt.run_ok(&b, "bind");
    assert!(out.starts_with("from host\nrw-ok\nro-refused\n"), "{out}");
    assert_eq!(fs::read_to_string(rw.path().join("from-container")).unwrap(), "written\n");
    assert!(!ro.path().join("nope").exists());
    let ro_opts = options_of(mount_line(&out, "/data-ro"));
    assert!(ro_opts.contains(&"ro") && ro_opts.contains(&"nosuid") && ro_opts.contains(&"nodev"), "{ro_opts:?}");
    assert!(options_of(mount_line(&out, "/data-rw")).contains(&"rw"));
    // The bind sources are not mounted over or left mounted on the host.
    assert!(mounts_under(rw.path()).is_empty() && mounts_under(ro.path()).is_empty());
}

#[test]
#[ignore = "needs root"]
fn bind_mount_of_a_single_file() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let dir = tempfile::Builder::new().prefix("krs-test-file-").tempdir().unwrap();
    let file = dir.path().join("resolv.conf");
    fs::write(&file, "nameserver 10.96.0.10\n").unwrap();
    let mut b = Bundle::busybox(&["cat", "/etc/resolv.conf"], &cg.child("file"));
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/etc/resolv.conf", "type": "bind", "source": file, "options": ["bind", "ro"]}));
    b.write();
    assert_eq!(rt.run_ok(&b, "file"), "nameserver 10.96.0.10\n");
}

#[test]
#[ignore = "needs root"]
fn tmpfs_mount_takes_its_options() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(
        &[
            "sh",
            "-c",
            "stat -c '%a %u %g' /scratch; grep ' /scratch ' /proc/self/mounts; \
             dd if=/dev/zero of=/scratch/big bs=1024 count=2048 2>&1 | grep -o 'No space left on device'",
        ],
        &cg.child("tmpfs"),
    );
    // The owner of the tmpfs writes to it (root has no CAP_DAC_OVERRIDE here).
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "mode=1770", "size=1m", "uid=1000", "gid=1000"]
    }));
    b.write();
    let out = rt.run_ok(&b, "tmpfs");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1770 1000 1000", "{out}");
    let opts = options_of(lines[1]);
    for o in ["rw", "nosuid", "nodev", "noexec", "size=1024k", "mode=1770", "uid=1000", "gid=1000"] {
        assert!(opts.contains(&o), "{o} missing in {opts:?}");
    }
    assert_eq!(lines[2], "No space left on device", "size=1m is enforced: {out}");
}

#[test]
#[ignore = "needs root"]
fn default_devices_have_the_right_numbers_and_modes() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(
        &[
            "sh",
            "-c",
            "for d in null zero full random urandom tty; do stat -c '%n %F %t,%T %a' /dev/$d; done; \
             echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c; \
             echo x > /dev/full 2>/dev/null || echo full-is-full",
        ],
        &cg.child("dev"),
    );
    let out = rt.run_ok(&b, "dev");
    let want = "/dev/null character special file 1,3 666\n\
                /dev/zero character special file 1,5 666\n\
                /dev/full character special file 1,7 666\n\
                /dev/random character special file 1,8 666\n\
                /dev/urandom character special file 1,9 666\n\
                /dev/tty character special file 5,0 666\n\
                4\n4\nfull-is-full\n";
    assert_eq!(out, want);
}

#[test]
#[ignore = "needs root"]
fn dev_has_the_usual_symlinks() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let b = Bundle::busybox(
        &["sh", "-c", "for l in fd stdin stdout stderr ptmx core; do echo $l=$(readlink /dev/$l); done; echo via-fd >> /dev/stdout"],
        &cg.child("links"),
    );
    let out = rt.run_ok(&b, "links");
    // /dev/core only where the kernel has /proc/kcore (this one may not), as with runc.
    let core = if Path::new("/proc/kcore").exists() { "/proc/kcore" } else { "" };
    assert_eq!(
        out,
        format!(
            "fd=/proc/self/fd\nstdin=/proc/self/fd/0\nstdout=/proc/self/fd/1\nstderr=/proc/self/fd/2\n\
             ptmx=pts/ptmx\ncore={core}\nvia-fd\n"
        )
    );
}

#[test]
#[ignore = "needs root"]
fn spec_devices_are_created_with_type_numbers_mode_and_owner() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(
        &["sh", "-c", "for d in /dev/fuse /dev/net/tun /dev/krs-blk /dev/krs-fifo /dev/null; do stat -c '%n %F %t,%T %a %u:%g' $d; done"],
        &cg.child("devs"),
    );
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/net/tun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o660, "uid": 1000, "gid": 5},
        {"path": "/dev/krs-blk", "type": "b", "major": 7, "minor": 200, "fileMode": 0o640},
        {"path": "/dev/krs-fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o620},
        // Replaces the default /dev/null's mode.
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}
    ]);
    b.write();
    let out = rt.run_ok(&b, "devs");
    assert_eq!(
        out,
        "/dev/fuse character special file a,e5 600 0:0\n\
         /dev/net/tun character special file a,c8 660 1000:5\n\
         /dev/krs-blk block special file 7,c8 640 0:0\n\
         /dev/krs-fifo fifo 0,0 620 0:0\n\
         /dev/null character special file 1,3 600 0:0\n"
    );
}

#[test]
#[ignore = "needs root"]
fn sysctls_apply_inside_and_leave_the_host_alone() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let read = |p: &str| fs::read_to_string(p).unwrap();
    let host_forward = read("/proc/sys/net/ipv4/ip_forward");
    let host_shmmni = read("/proc/sys/kernel/shmmni");
    let mut b = Bundle::busybox(&["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni"], &cg.child("sysctl"));
    let want_forward = if host_forward.trim() == "1" { "0" } else { "1" };
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": want_forward, "kernel.shmmni": "1234"});
    b.write();
    assert_eq!(rt.run_ok(&b, "sysctl"), format!("{want_forward}\n1234\n"));
    assert_eq!(read("/proc/sys/net/ipv4/ip_forward"), host_forward);
    assert_eq!(read("/proc/sys/kernel/shmmni"), host_shmmni);
}

#[test]
#[ignore = "needs root"]
fn sysctl_outside_the_container_namespaces_is_refused() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let mut b = Bundle::busybox(&["true"], &cg.child("badsysctl"));
    b.config["linux"]["sysctl"] = json!({"vm.swappiness": "1"});
    b.write();
    let before = fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let err = rt.fails(&["create", "--bundle", b.path().to_str().unwrap(), "badsysctl"]);
    assert!(err.contains("linux.sysctl.vm.swappiness"), "{err}");
    assert_eq!(fs::read_to_string("/proc/sys/vm/swappiness").unwrap(), before);
    rt.assert_gone("badsysctl", &cg);
}

/// Run a container bind-mounting a shared mount, inside a mount namespace of the test's own
/// (this host's mounts are all private, and the test must not change the host's): after the
/// container started, mount something under the source on the "host" side and, when `inner`,
/// from inside the container. Returns (what the container's mountinfo shows, what the "host"
/// mountinfo shows).
fn propagation_run(propagation: &str, inner: bool) -> (String, String) {
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    let src = tempfile::Builder::new().prefix("krs-test-prop-").tempdir().unwrap();
    let out = tempfile::Builder::new().prefix("krs-test-propout-").tempdir().unwrap();
    let id = "prop";
    let mut b = Bundle::busybox(&["sleep", "1000"], &cg.child(id));
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/shared", "type": "bind", "source": src.path(), "options": ["rbind"]}));
    b.config["linux"]["rootfsPropagation"] = json!(propagation);
    if inner {
        let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set] = caps.clone();
        }
    }
    b.write();
    let script = format!(
        r#"set -e
        mount -t tmpfs krs-src "$SRC"
        mount --make-shared "$SRC"
        mkdir "$SRC/late" "$SRC/inner"
        "$RT" --root "$ROOT" run -d --bundle "$BUNDLE" {id}
        mount -t tmpfs krs-late "$SRC/late"
        if [ {inner} = true ]; then "$RT" --root "$ROOT" exec {id} mount -t tmpfs krs-inner /shared/inner; fi
        "$RT" --root "$ROOT" exec {id} cat /proc/self/mountinfo > "$OUT/container"
        cat /proc/self/mountinfo > "$OUT/host"
        "$RT" --root "$ROOT" delete --force {id}
        "#
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
        .env("SRC", src.path())
        .env("OUT", out.path())
        .env("RT", BIN)
        .env("ROOT", rt.root.path())
        .env("BUNDLE", b.path());
    let res = test_support::run_captured(cmd, &["unshare", "propagation script"]);
    assert!(res.status.success(), "script failed: {}\n{}", text(&res.stdout), text(&res.stderr));
    // The test's mount namespace died with the script: nothing is left on the real host.
    assert!(mounts_under(src.path()).is_empty());
    (fs::read_to_string(out.path().join("container")).unwrap(), fs::read_to_string(out.path().join("host")).unwrap())
}

fn has_mount_from(mountinfo: &str, source: &str) -> bool {
    mountinfo.lines().any(|l| l.split(" - ").nth(1).is_some_and(|s| s.split(' ').nth(1) == Some(source)))
}

#[test]
#[ignore = "needs root"]
fn rootfs_propagation_rslave_receives_host_mounts() {
    require_root();
    let (container, _) = propagation_run("rslave", false);
    assert!(has_mount_from(&container, "krs-late"), "a mount made on the host after start reaches an rslave container:\n{container}");
}

#[test]
#[ignore = "needs root"]
fn rootfs_propagation_rprivate_receives_nothing() {
    require_root();
    let (container, _) = propagation_run("rprivate", false);
    assert!(has_mount_from(&container, "krs-src"), "the bind itself is there:\n{container}");
    assert!(!has_mount_from(&container, "krs-late"), "an rprivate container must not see later host mounts:\n{container}");
}

#[test]
#[ignore = "needs root"]
fn rootfs_propagation_rshared_sends_container_mounts_to_the_host() {
    require_root();
    let (container, host) = propagation_run("rshared", true);
    assert!(has_mount_from(&container, "krs-late"), "{container}");
    assert!(has_mount_from(&container, "krs-inner"), "{container}");
    assert!(has_mount_from(&host, "krs-inner"), "a mount made in an rshared container reaches the host:\n{host}");
}

#[test]
#[ignore = "needs root"]
fn no_pivot_enters_the_rootfs_too() {
    require_root();
    let cg = CgroupParent::new();
    let rt = Runtime::new(BIN);
    // A file only the host has: the bundle's own config.json, outside the rootfs.
    let mut b = Bundle::busybox(&["true"], &cg.child("nopivot"));
    let host_only = b.path().join("config.json");
    let script = format!("cat /marker; test -e {} && echo host-visible || echo rootfs-only; touch /x 2>/dev/null || echo ro", host_only.display());
    b.config["process"]["args"] = json!(["sh", "-c", script]);
    b.write();
    fs::write(b.rootfs().join("marker"), "in the rootfs\n").unwrap();
    assert!(host_only.exists());
    let out = rt.ok(&["run", "--no-pivot", "--bundle", b.path().to_str().unwrap(), "nopivot"]);
    assert_eq!(out, "in the rootfs\nrootfs-only\nro\n");
    assert!(mounts_under(b.path()).is_empty());
}
