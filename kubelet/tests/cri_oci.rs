//! A spec from `build_spec` run through `OciCli` by runtime-rs and by runc: create (with the
//! arguments the monitor uses), start, state, exec, kill, delete, and the idempotent repeats.
//! Proves the spec is one both runtimes accept and run as asked (user, groups, hostname,
//! sysctl, read-only rootfs, a bind-mounted /etc/hosts, the 14 default capabilities as the
//! bounding set, no_new_privs, the RuntimeDefault seccomp filter).
//!
//! Cgroups: the container goes below a `krs-test-*` cgroup of the test's own. runc, on a
//! hybrid host, would write to the v1 hierarchies, so it runs through a wrapper that gives
//! it a private mount namespace where /sys/fs/cgroup is that cgroup (as bench/lifecycle.sh
//! does); its containers then land below our cgroup too, and nothing else is written.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cri_api::runtime::v1::security_profile::ProfileType;
use cri_api::runtime::v1::{
    ContainerConfig, ContainerMetadata, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext, SecurityProfile,
};
use images::process_config::{UserDb, parse_config};
use kubelet_rs::cri::container::{
    ExecOptions, Namespace, NodeHost, OciCli, OciError, OciRuntime, OciStatus, SandboxNamespaces, SandboxParts, SpecInput,
    build_spec,
};
use test_support::{CgroupParent, busybox_rootfs, require_root, run_captured, text, unique};

/// runtime-rs, built in this build directory; `RUNTIME_RS` overrides.
fn runtime_rs() -> PathBuf {
    match std::env::var_os("RUNTIME_RS") {
        Some(p) => PathBuf::from(p),
        None => test_support::bins::workspace_bin("runtime-rs", "runtime-rs"),
    }
}

/// A container of our own: its bundle, runtime root and cgroup, removed on drop (the
/// container first).
struct Fixture {
    cli: OciCli,
    id: String,
    /// Where the container's cgroup appears on the host.
    cgroup: PathBuf,
    bundle: tempfile::TempDir,
    _root: tempfile::TempDir,
    _wrapper: tempfile::TempDir,
    _parent: CgroupParent,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.cli.delete(&self.id, true);
    }
}

impl Fixture {
    fn new(runtime: &str) -> Fixture {
        let parent = CgroupParent::new();
        let id = unique("ctr");
        let root = tempfile::Builder::new().prefix("krs-test-root-").tempdir().unwrap();
        let wrapper = tempfile::Builder::new().prefix("krs-test-wrap-").tempdir().unwrap();
        let bundle = tempfile::Builder::new().prefix("krs-test-bundle-").tempdir().unwrap();
        let (binary, cgroup) = match runtime {
            "runtime-rs" => (runtime_rs(), parent.path.join(&id)),
            "runc" => {
                let script = wrapper.path().join("runc");
                fs::write(
                    &script,
                    format!(
                        "#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount --bind \"$0\" /sys/fs/cgroup && exec runc \"$@\"' {} \"$@\"\n",
                        parent.path.display()
                    ),
                )
                .unwrap();
                fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
                // runc sees our cgroup as the root, so the same cgroupsPath lands one level down.
                (script, parent.path.join(&parent.name).join(&id))
            }
            other => panic!("unknown runtime {other}"),
        };
        let cli = OciCli::new(binary, root.path());
        Fixture { cli, id, cgroup, bundle, _root: root, _wrapper: wrapper, _parent: parent }
    }

    fn write_bundle(&self) {
        let rootfs = self.bundle.path().join("rootfs");
        let st = Command::new("cp").arg("-a").arg(busybox_rootfs()).arg(&rootfs).status().unwrap();
        assert!(st.success(), "copy the busybox rootfs");
        let _ = fs::remove_file(rootfs.join(".complete"));
        let hosts = self.bundle.path().join("hosts");
        fs::write(&hosts, "127.0.0.1 localhost\n10.0.0.7 krs-pod\n").unwrap();

        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
            command: vec!["sleep".into(), "1000".into()],
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    run_as_username: "user".into(),
                    run_as_group: Some(Int64Value { value: 1000 }),
                    supplemental_groups: vec![2000],
                    readonly_rootfs: true,
                    no_new_privs: true,
                    seccomp: Some(SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let image = parse_config(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["PATH=/bin"],"Cmd":["sh"]}}"#,
        )
        .unwrap();
        let users = UserDb {
            passwd: fs::read_to_string(rootfs.join("etc/passwd")).unwrap(),
            group: fs::read_to_string(rootfs.join("etc/group")).unwrap(),
        };
        let sandbox = SandboxParts {
            id: "sb-test".into(),
            hostname: "krs-pod".into(),
            namespaces: SandboxNamespaces { network: Namespace::New, ipc: Namespace::New, uts: Namespace::New, pid: Namespace::New },
            hosts_file: Some(hosts),
            resolv_conf: None,
            hostname_file: None,
            shm: None,
            cgroup_parent: format!("/{}", self._parent.name),
            sysctls: HashMap::from([("net.ipv4.ip_unprivileged_port_start".to_string(), "80".to_string())]),
        };
        let spec = build_spec(&SpecInput {
            id: &self.id,
            config: &config,
            sandbox: &sandbox,
            image: &image,
            image_name: "busybox",
            users: &users,
            rootfs: &rootfs,
            host: &NodeHost,
        })
        .unwrap();
        fs::write(self.bundle.path().join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();

        let mut exec = spec.process().clone().unwrap();
        exec.set_args(Some(vec![
            "sh".into(),
            "-c".into(),
            "id -u; id -G; hostname; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; grep krs-pod /etc/hosts; touch /x 2>/dev/null || echo read-only; grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status".into(),
        ]));
        fs::write(self.bundle.path().join("exec.json"), serde_json::to_vec(&exec).unwrap()).unwrap();
    }

    fn create(&self) {
        let bundle = self.bundle.path();
        let mut cmd = Command::new(&self.cli.binary);
        cmd.args(self.cli.create_args(&self.id, bundle, &bundle.join("pid"), None));
        let out = run_captured(cmd, &["create"]);
        assert!(out.status.success(), "create failed ({}): {}{}", out.status, text(&out.stdout), text(&out.stderr));
    }

    fn wait_status(&self, want: OciStatus) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.cli.state(&self.id).unwrap();
            if s.status == want {
                return;
            }
            assert!(Instant::now() < deadline, "container never became {want:?}; it is {:?}", s.status);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lifecycle(runtime: &str) {
    let f = Fixture::new(runtime);
    f.write_bundle();
    f.create();
    let id = f.id.as_str();

    let s = f.cli.state(id).unwrap();
    assert_eq!(s.status, OciStatus::Created);
    let pid = s.pid.expect("a created container has its init");
    let from_file: i32 = fs::read_to_string(f.bundle.path().join("pid")).unwrap().trim().parse().unwrap();
    assert_eq!(pid, from_file, "--pid-file names the init");
    assert!(f.cgroup.is_dir(), "{runtime}: the cgroup {} exists", f.cgroup.display());

    f.cli.start(id).unwrap();
    f.wait_status(OciStatus::Running);

    let out = f.cli.exec(id, &f.bundle.path().join("exec.json"), &ExecOptions::default()).unwrap();
    assert_eq!(out.exit_code, 0, "{runtime}: exec: {}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "1000\n1000 2000\nkrs-pod\n80\n10.0.0.7 krs-pod\nread-only\nCapBnd:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n", "{runtime}: {}", text(&out.stderr));

    f.cli.kill(id, libc::SIGKILL, false).unwrap();
    f.wait_status(OciStatus::Stopped);
    assert_eq!(f.cli.state(id).unwrap().pid, None);
    f.cli.kill(id, libc::SIGKILL, false).expect("killing a stopped container is not an error");

    f.cli.delete(id, false).unwrap();
    f.cli.delete(id, false).expect("deleting a deleted container is not an error");
    assert!(matches!(f.cli.state(id), Err(OciError::NotFound { .. })), "{runtime}: state of a deleted container");
    assert!(!f.cgroup.exists(), "{runtime}: the cgroup {} is removed", f.cgroup.display());
}

#[test]
#[ignore = "needs root"]
fn the_spec_runs_under_runtime_rs() {
    require_root();
    lifecycle("runtime-rs");
}

#[test]
#[ignore = "needs root"]
fn the_spec_runs_under_runc() {
    require_root();
    assert!(Command::new("runc").arg("--version").output().is_ok_and(|o| o.status.success()), "runc is not installed (apt-get install runc)");
    lifecycle("runc");
}
