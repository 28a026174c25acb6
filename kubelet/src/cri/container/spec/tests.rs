use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use cri_api::runtime::v1::security_profile::ProfileType;
use cri_api::runtime::v1::{
    Capability as CriCaps, ContainerConfig, ContainerMetadata, Device, HugepageLimit, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount as CriMount, MountPropagation,
    NamespaceMode, NamespaceOption, SecurityProfile, SupplementalGroupsPolicy,
};
use images::process_config::{UserDb, parse_config};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Spec};

use super::security::{DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use super::*;
use crate::cri::container::host::{Host, HostDevice};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\nbob:x:1000:1000::/home/bob:/bin/sh\n";
const GROUP: &str = "root:x:0:\nnginx:x:101:\nbob:x:1000:\nwheel:x:10:root,bob\naudio:x:29:bob\n";
const IMAGE: &str = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
    "config":{"User":"nginx","Env":["PATH=/usr/bin:/bin","NGINX_VERSION=1.27"],
    "Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],"WorkingDir":"/srv"}}"#;

struct FakeHost {
    devices: HashMap<PathBuf, Vec<HostDevice>>,
    files: HashMap<PathBuf, String>,
    swap: bool,
}

fn dev(path: &str, kind: LinuxDeviceType, major: i64, minor: i64) -> HostDevice {
    HostDevice { path: path.into(), kind, major, minor, mode: 0o666, uid: 0, gid: 0 }
}

impl Default for FakeHost {
    fn default() -> Self {
        let mut devices = HashMap::new();
        devices.insert(PathBuf::from("/dev/fuse"), vec![dev("/dev/fuse", LinuxDeviceType::C, 10, 229)]);
        devices.insert(
            PathBuf::from("/dev/dri"),
            vec![dev("/dev/dri/card0", LinuxDeviceType::C, 226, 0), dev("/dev/dri/renderD128", LinuxDeviceType::C, 226, 128)],
        );
        devices.insert(
            PathBuf::from("/dev"),
            vec![dev("/dev/null", LinuxDeviceType::C, 1, 3), dev("/dev/sda", LinuxDeviceType::B, 8, 0), dev("/dev/fuse", LinuxDeviceType::C, 10, 229)],
        );
        FakeHost { devices, files: HashMap::new(), swap: false }
    }
}

impl Host for FakeHost {
    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
        self.devices.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn all_capabilities(&self) -> Vec<Capability> {
        let mut v = DEFAULT_CAPABILITIES.to_vec();
        v.extend([Capability::SysAdmin, Capability::NetAdmin, Capability::SysTime, Capability::SysPtrace, Capability::IpcLock]);
        v
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn swap_accounting(&self) -> bool {
        self.swap
    }
}

/// One container to build, with a pod sandbox that joins its namespaces by path.
struct Case {
    config: ContainerConfig,
    sandbox: SandboxParts,
    image: ImageConfiguration,
    users: UserDb,
    host: FakeHost,
}

impl Case {
    fn new() -> Case {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: "web".into(), attempt: 0 }),
            linux: Some(LinuxContainerConfig { resources: None, security_context: Some(Default::default()) }),
            ..Default::default()
        };
        let sandbox = SandboxParts {
            id: "sb1".into(),
            hostname: "pod-a".into(),
            namespaces: SandboxNamespaces {
                network: Namespace::Join("/run/krs/ns/net/sb1".into()),
                ipc: Namespace::Join("/run/krs/ns/ipc/sb1".into()),
                uts: Namespace::Join("/run/krs/ns/uts/sb1".into()),
                pid: Namespace::New,
            },
            hosts_file: Some("/var/lib/krs/sandboxes/sb1/hosts".into()),
            resolv_conf: Some("/var/lib/krs/sandboxes/sb1/resolv.conf".into()),
            hostname_file: Some("/var/lib/krs/sandboxes/sb1/hostname".into()),
            shm: Some("/run/krs/sandboxes/sb1/shm".into()),
            cgroup_parent: "/kubepods/pod123".into(),
            sysctls: HashMap::from([("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string())]),
        };
        Case {
            config,
            sandbox,
            image: parse_config(IMAGE.as_bytes()).unwrap(),
            users: UserDb { passwd: PASSWD.into(), group: GROUP.into() },
            host: FakeHost::default(),
        }
    }

    fn sc(&mut self) -> &mut LinuxContainerSecurityContext {
        self.config.linux.get_or_insert_with(Default::default).security_context.get_or_insert_with(Default::default)
    }

    fn res(&mut self) -> &mut LinuxContainerResources {
        self.config.linux.get_or_insert_with(Default::default).resources.get_or_insert_with(Default::default)
    }

    fn try_build(&self) -> Result<Spec, SpecError> {
        build_spec(&SpecInput {
            id: "c1",
            config: &self.config,
            sandbox: &self.sandbox,
            image: &self.image,
            image_name: "docker.io/library/nginx:1.27",
            users: &self.users,
            rootfs: Path::new("/var/lib/krs/containers/c1/rootfs"),
            host: &self.host,
        })
    }

    /// Build, and require that runtime-rs's validation accepts the spec.
    fn build(&self) -> Spec {
        let spec = self.try_build().unwrap_or_else(|e| panic!("build_spec: {e}"));
        let json = serde_json::to_string(&spec).unwrap();
        let reparsed: Spec = serde_json::from_str(&json).unwrap();
        if let Err(problems) = runtime_rs::spec::Config::from_spec(Path::new("/b"), reparsed) {
            panic!("runtime-rs refuses the spec: {problems:?}\n{json}");
        }
        spec
    }

    fn err(&self) -> String {
        self.try_build().expect_err("build_spec should fail").to_string()
    }
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn process(s: &Spec) -> &oci_spec::runtime::Process {
    s.process().as_ref().unwrap()
}

fn linux(s: &Spec) -> &oci_spec::runtime::Linux {
    s.linux().as_ref().unwrap()
}

fn caps_sorted(set: &Option<std::collections::HashSet<Capability>>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().flatten().map(|c| c.to_string()).collect();
    v.sort();
    v
}

fn destinations(s: &Spec) -> Vec<String> {
    s.mounts().iter().flatten().map(|m| m.destination().display().to_string()).collect()
}

fn mount_at<'a>(s: &'a Spec, dest: &str) -> &'a oci_spec::runtime::Mount {
    s.mounts().iter().flatten().find(|m| m.destination() == Path::new(dest)).unwrap_or_else(|| panic!("no mount at {dest}"))
}

#[test]
fn the_defaults_are_containerds() {
    let s = Case::new().build();
    let p = process(&s);
    assert_eq!(p.args().clone().unwrap(), v(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]));
    assert_eq!(p.env().clone().unwrap(), v(&["HOSTNAME=pod-a", "PATH=/usr/bin:/bin", "NGINX_VERSION=1.27"]));
    assert_eq!(p.cwd(), Path::new("/srv"));
    assert_eq!((p.user().uid(), p.user().gid(), p.user().additional_gids().clone()), (101, 101, Some(vec![101])));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.rlimits(), &None, "the runtime's own limits are inherited");
    assert_eq!(p.oom_score_adj(), Some(0));
    let caps = p.capabilities().as_ref().unwrap();
    let mut want: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    want.sort();
    assert_eq!(caps_sorted(caps.bounding()), want);
    assert_eq!(caps_sorted(caps.effective()), want);
    assert_eq!(caps_sorted(caps.permitted()), want);
    assert_eq!(caps_sorted(caps.inheritable()), Vec::<String>::new());
    assert_eq!(caps.ambient(), &None);

    let root = s.root().as_ref().unwrap();
    assert_eq!((root.path().as_path(), root.readonly()), (Path::new("/var/lib/krs/containers/c1/rootfs"), Some(false)));
    assert_eq!(s.hostname(), &None, "the pod's UTS namespace already has its hostname");
    assert_eq!(
        destinations(&s),
        v(&["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/dev/shm"])
    );
    assert_eq!(mount_at(&s, "/sys").options().clone().unwrap(), v(&["nosuid", "noexec", "nodev", "ro"]));
    assert_eq!(mount_at(&s, "/etc/hosts").options().clone().unwrap(), v(&["rbind", "rprivate", "rw"]));
    assert_eq!(mount_at(&s, "/etc/hosts").source().as_deref(), Some(Path::new("/var/lib/krs/sandboxes/sb1/hosts")));
    assert_eq!(mount_at(&s, "/dev/shm").options().clone().unwrap(), v(&["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"]));

    let l = linux(&s);
    let ns: Vec<(LinuxNamespaceType, Option<PathBuf>)> = l.namespaces().iter().flatten().map(|n| (n.typ(), n.path().clone())).collect();
    assert_eq!(
        ns,
        vec![
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Network, Some("/run/krs/ns/net/sb1".into())),
            (LinuxNamespaceType::Ipc, Some("/run/krs/ns/ipc/sb1".into())),
            (LinuxNamespaceType::Uts, Some("/run/krs/ns/uts/sb1".into())),
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Cgroup, None),
        ]
    );
    assert_eq!(l.cgroups_path().as_deref(), Some(Path::new("/kubepods/pod123/c1")));
    assert_eq!(l.masked_paths().clone().unwrap(), v(DEFAULT_MASKED_PATHS));
    assert_eq!(l.readonly_paths().clone().unwrap(), v(DEFAULT_READONLY_PATHS));
    assert_eq!(l.sysctl().clone().unwrap().get("net.ipv4.ip_unprivileged_port_start").map(String::as_str), Some("0"));
    assert!(l.seccomp().is_none(), "no profile asked for: unconfined, as containerd");
    let r = l.resources().as_ref().unwrap();
    assert!(r.cpu().is_none() && r.memory().is_none(), "nothing asked, nothing set");
    let rules = r.devices().clone().unwrap();
    assert_eq!((rules.len(), rules[0].allow(), rules[0].access().as_deref()), (1, false, Some("rwm")));
    let a = s.annotations().clone().unwrap();
    assert_eq!(a["io.kubernetes.cri.container-type"], "container");
    assert_eq!(a["io.kubernetes.cri.sandbox-id"], "sb1");
    assert_eq!(a["io.kubernetes.cri.container-name"], "web");
    assert_eq!(a["io.kubernetes.cri.image-name"], "docker.io/library/nginx:1.27");
}

#[test]
fn command_and_args_follow_kubernetes() {
    // (command, args) -> process args: command replaces Entrypoint and drops Cmd; args replace Cmd.
    let table: &[(&[&str], &[&str], &[&str])] = &[
        (&[], &[], &["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]),
        (&["sh"], &[], &["sh"]),
        (&["sh"], &["-c", "true"], &["sh", "-c", "true"]),
        (&[], &["-v"], &["/docker-entrypoint.sh", "-v"]),
    ];
    for (command, args, want) in table {
        let mut c = Case::new();
        c.config.command = v(command);
        c.config.args = v(args);
        assert_eq!(process(&c.build()).args().clone().unwrap(), v(want), "command {command:?} args {args:?}");
    }
    let mut c = Case::new();
    c.image = parse_config(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
    assert!(c.err().starts_with("command: neither command nor args"), "{}", c.err());
    c.config.args = v(&["/bin/app"]);
    assert_eq!(process(&c.build()).args().clone().unwrap(), v(&["/bin/app"]));
}

#[test]
fn envs_override_the_images_by_name() {
    let mut c = Case::new();
    c.config.envs = vec![KeyValue { key: "NGINX_VERSION".into(), value: "2".into() }, KeyValue { key: "X".into(), value: "a=b".into() }];
    c.config.working_dir = "/w".into();
    c.config.tty = true;
    let s = c.build();
    assert_eq!(process(&s).env().clone().unwrap(), v(&["HOSTNAME=pod-a", "PATH=/usr/bin:/bin", "NGINX_VERSION=2", "X=a=b", "TERM=xterm"]));
    assert_eq!((process(&s).cwd().as_path(), process(&s).terminal()), (Path::new("/w"), Some(true)));
    c.config.envs.push(KeyValue { key: "".into(), value: "x".into() });
    assert!(c.err().starts_with("envs[2].key:"), "{}", c.err());
    c.config.envs.pop();
    c.config.envs.push(KeyValue { key: "HOSTNAME".into(), value: "mine".into() });
    let env = process(&c.build()).env().clone().unwrap();
    assert!(env.contains(&"HOSTNAME=mine".to_string()) && !env.contains(&"HOSTNAME=pod-a".to_string()), "{env:?}");
    c.config.working_dir = "relative".into();
    assert!(c.err().starts_with("working_dir:"), "{}", c.err());
}

#[test]
fn users_resolve_with_the_images_passwd_and_the_security_context() {
    type Set = fn(&mut LinuxContainerSecurityContext);
    type Want = (u32, u32, &'static [u32]);
    let table: &[(&str, Set, Want)] = &[
        ("image user nginx", |_| {}, (101, 101, &[101])),
        ("run_as_user 1000", |s| s.run_as_user = Some(Int64Value { value: 1000 }), (1000, 1000, &[1000, 10, 29])),
        ("unknown uid", |s| s.run_as_user = Some(Int64Value { value: 4242 }), (4242, 0, &[0])),
        ("run_as_username bob", |s| s.run_as_username = "bob".into(), (1000, 1000, &[1000, 10, 29])),
        ("uid and gid", |s| {
            s.run_as_user = Some(Int64Value { value: 1000 });
            s.run_as_group = Some(Int64Value { value: 77 });
        }, (1000, 77, &[77, 10, 29])),
        ("only the group: the image's user", |s| s.run_as_group = Some(Int64Value { value: 77 }), (101, 77, &[77])),
        ("supplemental groups merged", |s| {
            s.run_as_user = Some(Int64Value { value: 1000 });
            s.supplemental_groups = vec![5, 10];
        }, (1000, 1000, &[1000, 10, 29, 5])),
        ("strict: only the security context's", |s| {
            s.run_as_user = Some(Int64Value { value: 1000 });
            s.supplemental_groups = vec![5];
            s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict as i32;
        }, (1000, 1000, &[1000, 5])),
    ];
    for (what, set, (uid, gid, gids)) in table {
        let mut c = Case::new();
        set(c.sc());
        let s = c.build();
        let u = process(&s).user();
        assert_eq!((u.uid(), u.gid(), u.additional_gids().clone().unwrap()), (*uid, *gid, gids.to_vec()), "{what}");
    }
    let mut c = Case::new();
    c.image = parse_config(IMAGE.replace("\"nginx\",\"-g\"", "\"x\"").replace("\"User\":\"nginx\"", "\"User\":\"bob:wheel\"").as_bytes()).unwrap();
    let s = c.build();
    assert_eq!((process(&s).user().uid(), process(&s).user().gid()), (1000, 10), "image user:group");

    let mut c = Case::new();
    c.sc().run_as_user = Some(Int64Value { value: -1 });
    assert!(c.err().starts_with("linux.security_context.run_as_user: -1"), "{}", c.err());
    let mut c = Case::new();
    c.sc().supplemental_groups = vec![1, 1 << 40];
    assert!(c.err().starts_with("linux.security_context.supplemental_groups[1]:"), "{}", c.err());
    let mut c = Case::new();
    c.sc().run_as_username = "alice".into();
    let e = c.err();
    assert!(e.starts_with("linux.security_context.run_as_username: user \"alice\"") && e.contains("passwd"), "{e}");
    let mut c = Case::new();
    c.users.passwd.clear();
    assert!(c.err().starts_with("image config User: user \"nginx\""), "{}", c.err());
}

fn with_caps(add: &[&str], drop: &[&str]) -> Case {
    let mut c = Case::new();
    c.sc().capabilities = Some(CriCaps { add_capabilities: v(add), drop_capabilities: v(drop), add_ambient_capabilities: vec![] });
    c
}

fn bounding(c: &Case) -> Vec<String> {
    caps_sorted(process(&c.build()).capabilities().as_ref().unwrap().bounding())
}

#[test]
fn capabilities_are_added_and_dropped_with_all() {
    let b = bounding(&with_caps(&["NET_ADMIN", "cap_sys_time"], &["CHOWN", "CAP_KILL"]));
    assert!(b.contains(&"NET_ADMIN".into()) && b.contains(&"SYS_TIME".into()), "{b:?}");
    assert!(!b.contains(&"CHOWN".into()) && !b.contains(&"KILL".into()), "{b:?}");
    assert_eq!(b.len(), 14);

    let b = bounding(&with_caps(&["ALL"], &["CHOWN"]));
    assert_eq!(b.len(), 18, "the host's 19 without CHOWN: {b:?}");
    assert!(b.contains(&"SYS_ADMIN".into()) && !b.contains(&"CHOWN".into()));

    assert_eq!(bounding(&with_caps(&["NET_BIND_SERVICE"], &["ALL"])), v(&["NET_BIND_SERVICE"]));
    assert_eq!(bounding(&with_caps(&[], &["all"])), Vec::<String>::new());

    let c = with_caps(&["NET_ADMIN", "FLY"], &[]);
    assert!(c.err().starts_with("linux.security_context.capabilities.add_capabilities[1]: \"FLY\""), "{}", c.err());
    let c = with_caps(&[], &["NOPE"]);
    assert!(c.err().starts_with("linux.security_context.capabilities.drop_capabilities[0]"), "{}", c.err());

    let mut c = with_caps(&["NET_ADMIN"], &[]);
    c.sc().capabilities.as_mut().unwrap().add_ambient_capabilities = v(&["NET_ADMIN"]);
    let s = c.build();
    let caps = process(&s).capabilities().as_ref().unwrap();
    assert_eq!((caps_sorted(caps.ambient()), caps_sorted(caps.inheritable())), (v(&["NET_ADMIN"]), v(&["NET_ADMIN"])));
    c.sc().capabilities.as_mut().unwrap().add_ambient_capabilities = v(&["SYS_ADMIN"]);
    assert!(c.err().contains("add_ambient_capabilities[0]"), "{}", c.err());
}

#[test]
fn privileged_gets_everything() {
    let mut c = with_caps(&[], &["ALL"]);
    c.sc().privileged = true;
    c.sc().seccomp = Some(SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, localhost_ref: String::new() });
    c.sc().masked_paths = v(&["/proc/kcore"]);
    let s = c.build();
    assert_eq!(bounding(&c).len(), 19, "every capability, whatever is dropped");
    let l = linux(&s);
    assert_eq!((l.masked_paths().clone().unwrap(), l.readonly_paths().clone().unwrap()), (vec![], vec![]));
    assert!(l.seccomp().is_none());
    assert_eq!(mount_at(&s, "/sys").options().clone().unwrap(), v(&["nosuid", "noexec", "nodev", "rw"]));
    assert_eq!(mount_at(&s, "/sys/fs/cgroup").options().clone().unwrap().last().map(String::as_str), Some("rw"));
    let devs: Vec<String> = l.devices().iter().flatten().map(|d| d.path().display().to_string()).collect();
    assert_eq!(devs, v(&["/dev/null", "/dev/sda", "/dev/fuse"]));
    let rules = l.resources().as_ref().unwrap().devices().clone().unwrap();
    assert_eq!((rules.len(), rules[0].allow()), (1, true));
}

#[test]
fn readonly_rootfs_makes_the_sandbox_files_readonly_but_not_shm() {
    let mut c = Case::new();
    c.sc().readonly_rootfs = true;
    let s = c.build();
    assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    for f in ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"] {
        assert_eq!(mount_at(&s, f).options().clone().unwrap(), v(&["rbind", "rprivate", "ro"]), "{f}");
    }
    assert!(mount_at(&s, "/dev/shm").options().clone().unwrap().contains(&"rw".to_string()));
}

fn ns_types(s: &Spec) -> Vec<(LinuxNamespaceType, bool)> {
    linux(s).namespaces().iter().flatten().map(|n| (n.typ(), n.path().is_some())).collect()
}

#[test]
fn namespaces_follow_the_pod_and_the_container() {
    let mut c = Case::new();
    c.sandbox.namespaces.pid = Namespace::Join("/run/krs/ns/pid/sb1".into());
    let s = c.build();
    assert!(ns_types(&s).contains(&(LinuxNamespaceType::Pid, true)), "shared pid namespace joined");
    c.sc().namespace_options = Some(NamespaceOption { pid: NamespaceMode::Container as i32, ..Default::default() });
    assert!(ns_types(&c.build()).contains(&(LinuxNamespaceType::Pid, false)), "CONTAINER: a new one");
    c.sc().namespace_options = Some(NamespaceOption {
        pid: NamespaceMode::Node as i32,
        network: NamespaceMode::Node as i32,
        ipc: NamespaceMode::Node as i32,
        ..Default::default()
    });
    assert!(c.err().starts_with("sandbox linux.sysctls.net.ipv4.ip_unprivileged_port_start: the container uses the node's network"), "{}", c.err());
    c.sandbox.sysctls.clear();
    let types: Vec<LinuxNamespaceType> = ns_types(&c.build()).into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, vec![LinuxNamespaceType::Uts, LinuxNamespaceType::Mount, LinuxNamespaceType::Cgroup]);
    c.sc().namespace_options = Some(NamespaceOption { pid: NamespaceMode::Target as i32, target_id: "x".into(), ..Default::default() });
    assert!(c.err().contains("namespace_options.pid") && c.err().contains("not supported"), "{}", c.err());
    c.sc().namespace_options = Some(NamespaceOption { network: 42, ..Default::default() });
    assert!(c.err().starts_with("linux.security_context.namespace_options.network: 42"), "{}", c.err());

    let mut c = Case::new();
    c.sandbox.namespaces.uts = Namespace::New;
    assert_eq!(c.build().hostname().as_deref(), Some("pod-a"), "a UTS namespace of its own gets the pod's hostname");
    c.sandbox.namespaces.network = Namespace::Join("relative".into());
    assert!(c.err().contains("must be absolute"), "{}", c.err());
}

fn cri_mount(container: &str, host: &str, readonly: bool, propagation: MountPropagation) -> CriMount {
    CriMount {
        container_path: container.into(),
        host_path: host.into(),
        readonly,
        propagation: propagation as i32,
        ..Default::default()
    }
}

#[test]
fn cri_mounts_are_binds_in_order_with_their_propagation() {
    let mut c = Case::new();
    c.config.mounts = vec![
        cri_mount("/data/cache", "/var/lib/kubelet/pods/p/volumes/cache", false, MountPropagation::PropagationPrivate),
        cri_mount("/data", "/var/lib/kubelet/pods/p/volumes/data", true, MountPropagation::PropagationHostToContainer),
        cri_mount("/etc/hosts", "/var/lib/kubelet/pods/p/etc-hosts", false, MountPropagation::PropagationPrivate),
    ];
    let s = c.build();
    let d = destinations(&s);
    let pos = |x: &str| d.iter().position(|m| m == x).unwrap();
    assert!(pos("/data") < pos("/data/cache"), "parents first: {d:?}");
    assert_eq!(d.iter().filter(|m| *m == "/etc/hosts").count(), 1, "the CRI's /etc/hosts replaces the sandbox's");
    assert_eq!(mount_at(&s, "/etc/hosts").source().as_deref(), Some(Path::new("/var/lib/kubelet/pods/p/etc-hosts")));
    assert_eq!(mount_at(&s, "/data").options().clone().unwrap(), v(&["rbind", "rslave", "ro"]));
    assert_eq!(mount_at(&s, "/data").typ().as_deref(), Some("bind"));
    assert_eq!(mount_at(&s, "/data/cache").options().clone().unwrap(), v(&["rbind", "rprivate", "rw"]));
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rslave"));

    c.config.mounts.push(cri_mount("/shared", "/mnt/shared", false, MountPropagation::PropagationBidirectional));
    let s = c.build();
    assert_eq!(mount_at(&s, "/shared").options().clone().unwrap()[1], "rshared");
    assert_eq!(linux(&s).rootfs_propagation().as_deref(), Some("rshared"));

    let mut c = Case::new();
    c.config.mounts = vec![cri_mount("/dev", "/dev", false, MountPropagation::PropagationPrivate)];
    let d = destinations(&c.build());
    assert!(!d.iter().any(|m| m == "/dev/pts" || m == "/dev/mqueue"), "a mount over /dev replaces what is below: {d:?}");
    assert!(d.iter().any(|m| m == "/dev/shm"), "the sandbox's shm goes over it: {d:?}");

    for (m, want) in [
        (cri_mount("data", "/x", false, MountPropagation::PropagationPrivate), "mounts[0].container_path:"),
        (cri_mount("/a/../b", "/x", false, MountPropagation::PropagationPrivate), "mounts[0].container_path:"),
        (cri_mount("/data", "x", false, MountPropagation::PropagationPrivate), "mounts[0].host_path:"),
        (CriMount { propagation: 9, ..cri_mount("/d", "/x", false, MountPropagation::PropagationPrivate) }, "mounts[0].propagation:"),
        (CriMount { recursive_read_only: true, ..cri_mount("/d", "/x", false, MountPropagation::PropagationPrivate) }, "mounts[0].recursive_read_only:"),
        (
            CriMount {
                image: Some(cri_api::runtime::v1::ImageSpec { image: "busybox".into(), ..Default::default() }),
                ..cri_mount("/d", "", false, MountPropagation::PropagationPrivate)
            },
            "mounts[0].image:",
        ),
    ] {
        let mut c = Case::new();
        c.config.mounts = vec![m];
        assert!(c.err().starts_with(want), "{} should start with {want}", c.err());
    }
    let mut c = Case::new();
    c.config.mounts = vec![CriMount { recursive_read_only: true, ..cri_mount("/d", "/x", true, MountPropagation::PropagationPrivate) }];
    let s = c.try_build().unwrap();
    assert_eq!(mount_at(&s, "/d").options().clone().unwrap(), v(&["rbind", "rprivate", "ro", "rro"]));
}

#[test]
fn without_sandbox_files_the_container_gets_its_own_shm() {
    let mut c = Case::new();
    (c.sandbox.hosts_file, c.sandbox.resolv_conf, c.sandbox.hostname_file, c.sandbox.shm) = (None, None, None, None);
    let s = c.build();
    assert_eq!(destinations(&s), v(&["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]));
    assert_eq!(mount_at(&s, "/dev/shm").typ().as_deref(), Some("tmpfs"));
}

#[test]
fn devices_become_nodes_and_cgroup_rules() {
    let mut c = Case::new();
    c.config.devices = vec![
        Device { container_path: "/dev/fuse".into(), host_path: "/dev/fuse".into(), permissions: "rw".into() },
        Device { container_path: "/dev/gpu".into(), host_path: "/dev/dri".into(), permissions: "".into() },
    ];
    let s = c.build();
    let l = linux(&s);
    let nodes: Vec<(String, i64, i64)> = l.devices().iter().flatten().map(|d| (d.path().display().to_string(), d.major(), d.minor())).collect();
    assert_eq!(nodes, vec![("/dev/fuse".into(), 10, 229), ("/dev/gpu/card0".into(), 226, 0), ("/dev/gpu/renderD128".into(), 226, 128)]);
    type Rule = (bool, Option<i64>, Option<i64>, Option<String>);
    let rules: Vec<Rule> =
        l.resources().as_ref().unwrap().devices().iter().flatten().map(|r| (r.allow(), r.major(), r.minor(), r.access().clone())).collect();
    assert_eq!(
        rules,
        vec![
            (false, None, None, Some("rwm".into())),
            (true, Some(10), Some(229), Some("rw".into())),
            (true, Some(226), Some(0), Some("rwm".into())),
            (true, Some(226), Some(128), Some("rwm".into())),
        ]
    );
    c.config.devices = vec![Device { container_path: "/dev/x".into(), host_path: "/dev/missing".into(), permissions: "r".into() }];
    assert!(c.err().starts_with("devices[0].host_path: /dev/missing:"), "{}", c.err());
    c.config.devices = vec![Device { container_path: "/dev/fuse".into(), host_path: "/dev/fuse".into(), permissions: "rx".into() }];
    assert!(c.err().starts_with("devices[0].permissions:"), "{}", c.err());
    c.config.devices = vec![Device { container_path: "fuse".into(), host_path: "/dev/fuse".into(), permissions: "r".into() }];
    assert!(c.err().starts_with("devices[0].container_path:"), "{}", c.err());
}

fn with_seccomp(t: ProfileType, r: &str) -> Case {
    let mut c = Case::new();
    c.sc().seccomp = Some(SecurityProfile { profile_type: t as i32, localhost_ref: r.into() });
    c
}

#[test]
fn seccomp_runtime_default_unconfined_and_localhost() {
    let s = with_seccomp(ProfileType::RuntimeDefault, "").build();
    let p = linux(&s).seccomp().clone().expect("RuntimeDefault has a filter");
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    let allowed: Vec<String> = p.syscalls().iter().flatten().flat_map(|s| s.names().clone()).collect();
    assert!(allowed.contains(&"read".to_string()) && !allowed.contains(&"mount".to_string()), "no SYS_ADMIN, no mount");
    let mut c = with_seccomp(ProfileType::RuntimeDefault, "");
    c.sc().capabilities = Some(CriCaps { add_capabilities: v(&["SYS_ADMIN"]), ..Default::default() });
    let s = c.build();
    let allowed: Vec<String> = linux(&s).seccomp().iter().flat_map(|p| p.syscalls().clone().unwrap()).flat_map(|s| s.names().clone()).collect();
    assert!(allowed.contains(&"mount".to_string()), "the profile follows the capabilities");

    assert!(linux(&with_seccomp(ProfileType::Unconfined, "").build()).seccomp().is_none());

    let mut c = with_seccomp(ProfileType::Localhost, "/var/lib/kubelet/seccomp/audit.json");
    c.host.files.insert("/var/lib/kubelet/seccomp/audit.json".into(), r#"{"defaultAction":"SCMP_ACT_LOG"}"#.into());
    assert_eq!(linux(&c.build()).seccomp().as_ref().unwrap().default_action(), LinuxSeccompAction::ScmpActLog);
    c.host.files.insert("/var/lib/kubelet/seccomp/audit.json".into(), "{".into());
    assert!(c.err().starts_with("linux.security_context.seccomp.localhost_ref: /var/lib/kubelet/seccomp/audit.json: not an OCI"), "{}", c.err());
    c.host.files.clear();
    assert!(matches!(c.try_build(), Err(SpecError::Host { .. })), "{}", c.err());
    let c = with_seccomp(ProfileType::Localhost, "audit.json");
    assert!(c.err().contains("must be an absolute path"), "{}", c.err());
    let mut c = Case::new();
    c.sc().seccomp = Some(SecurityProfile { profile_type: 7, localhost_ref: String::new() });
    assert!(c.err().starts_with("linux.security_context.seccomp.profile_type:"), "{}", c.err());

    let mut c = Case::new();
    c.sc().apparmor = Some(SecurityProfile { profile_type: ProfileType::Localhost as i32, localhost_ref: "k8s-nginx".into() });
    assert!(c.err().contains("apparmor") && c.err().contains("not supported"), "{}", c.err());
}

#[test]
fn masked_and_readonly_paths_from_the_kubelet() {
    let mut c = Case::new();
    c.sc().masked_paths = v(&["/proc/kcore"]);
    c.sc().readonly_paths = v(&["/proc/sys"]);
    let s = c.build();
    assert_eq!(linux(&s).masked_paths().clone().unwrap(), v(&["/proc/kcore"]));
    assert_eq!(linux(&s).readonly_paths().clone().unwrap(), v(&["/proc/sys"]));
}

#[test]
fn sysctls_and_the_cgroup_parent() {
    let mut c = Case::new();
    c.sandbox.sysctls.insert("kernel.shm_rmid_forced".into(), "1".into());
    assert_eq!(linux(&c.build()).sysctl().clone().unwrap().len(), 2);
    c.sandbox.sysctls.insert("net..x".into(), "1".into());
    assert!(c.err().starts_with("sandbox linux.sysctls.net..x:"), "{}", c.err());

    let mut c = Case::new();
    c.sandbox.cgroup_parent = String::new();
    assert_eq!(linux(&c.build()).cgroups_path().as_deref(), Some(Path::new("/kubelet-rs/c1")));
    c.sandbox.cgroup_parent = "kubepods/besteffort/pod1".into();
    assert_eq!(linux(&c.build()).cgroups_path().as_deref(), Some(Path::new("/kubepods/besteffort/pod1/c1")));
    c.sandbox.cgroup_parent = "kubepods-besteffort-pod1.slice".into();
    assert!(matches!(c.try_build(), Err(SpecError::Unsupported { .. })), "{}", c.err());
    c.sandbox.cgroup_parent = "/kubepods/../etc".into();
    assert!(c.err().contains("\"..\""), "{}", c.err());
}

#[test]
fn resources_map_and_zeros_stay_out() {
    let mut c = Case::new();
    *c.res() = LinuxContainerResources {
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpuset_cpus: "0-1,3".into(),
        memory_limit_in_bytes: 64 << 20,
        oom_score_adj: 999,
        hugepage_limits: vec![HugepageLimit { page_size: "2MB".into(), limit: 4 << 20 }],
        unified: HashMap::from([("memory.high".to_string(), "50000000".to_string())]),
        ..Default::default()
    };
    let s = c.build();
    let r = linux(&s).resources().clone().unwrap();
    let cpu = r.cpu().clone().unwrap();
    assert_eq!((cpu.shares(), cpu.quota(), cpu.period(), cpu.cpus().as_deref(), cpu.mems().as_deref()), (Some(512), Some(50_000), Some(100_000), Some("0-1,3"), None));
    let mem = r.memory().unwrap();
    assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), None), "no swap accounting: no swap limit");
    let h = &r.hugepage_limits().clone().unwrap()[0];
    assert_eq!((h.page_size().as_str(), h.limit()), ("2MB", 4 << 20));
    assert_eq!(r.unified().clone().unwrap()["memory.high"], "50000000");
    assert_eq!(process(&s).oom_score_adj(), Some(999));

    c.host.swap = true;
    assert_eq!(linux(&c.build()).resources().clone().unwrap().memory().unwrap().swap(), Some(64 << 20), "swap accounted: no swapping");
    c.res().memory_swap_limit_in_bytes = 128 << 20;
    assert_eq!(linux(&c.build()).resources().clone().unwrap().memory().unwrap().swap(), Some(128 << 20));

    let mut c = Case::new();
    c.res().cpu_quota = 20_000;
    let cpu = linux(&c.build()).resources().clone().unwrap().cpu().clone().unwrap();
    assert_eq!((cpu.shares(), cpu.quota(), cpu.period()), (None, Some(20_000), None), "no shares invented");

    for (set, want) in [
        ((|r: &mut LinuxContainerResources| r.cpu_shares = -2) as fn(&mut LinuxContainerResources), "linux.resources.cpu_shares:"),
        (|r| r.cpu_quota = -5, "linux.resources.cpu_quota:"),
        (|r| r.memory_limit_in_bytes = -1, "linux.resources.memory_limit_in_bytes:"),
        (|r| {
            r.memory_limit_in_bytes = 100;
            r.memory_swap_limit_in_bytes = 50;
        }, "linux.resources.memory_swap_limit_in_bytes:"),
        (|r| r.oom_score_adj = 1001, "linux.resources.oom_score_adj:"),
        (|r| r.cpuset_cpus = "0-a".into(), "linux.resources.cpuset_cpus:"),
        (|r| r.hugepage_limits = vec![HugepageLimit { page_size: "huge".into(), limit: 1 }], "linux.resources.hugepage_limits[0].page_size:"),
        (|r| r.unified = HashMap::from([("../x".to_string(), "1".to_string())]), "linux.resources.unified.../x:"),
    ] {
        let mut c = Case::new();
        set(c.res());
        assert!(c.err().starts_with(want), "{} should start with {want}", c.err());
    }
}

#[test]
fn no_linux_section_means_the_defaults() {
    let mut c = Case::new();
    c.config.linux = None;
    let s = c.build();
    assert_eq!(process(&s).user().uid(), 101);
    assert_eq!(linux(&s).masked_paths().clone().unwrap(), v(DEFAULT_MASKED_PATHS));
}

#[test]
fn user_namespaces_are_refused() {
    let mut c = Case::new();
    c.sc().namespace_options = Some(NamespaceOption {
        userns_options: Some(cri_api::runtime::v1::UserNamespace { mode: NamespaceMode::Pod as i32, uids: vec![], gids: vec![] }),
        ..Default::default()
    });
    assert!(c.err().contains("userns_options") && c.err().contains("not supported"), "{}", c.err());
}

#[test]
fn exec_processes_keep_the_containers_user_and_env() {
    let mut c = Case::new();
    c.sc().run_as_user = Some(Int64Value { value: 1000 });
    let s = c.build();
    let p = exec_process(&s, &v(&["ls", "-l"]), true).unwrap();
    assert_eq!((p.args().clone().unwrap(), p.terminal(), p.user().uid()), (v(&["ls", "-l"]), Some(true), 1000));
    assert_eq!(p.env(), process(&s).env());
    assert!(exec_process(&s, &[], false).unwrap_err().to_string().starts_with("cmd:"));
}

#[test]
fn resources_for_update_are_the_same_mapping() {
    let r = LinuxContainerResources { memory_limit_in_bytes: 1 << 30, cpu_shares: 2, ..Default::default() };
    let out = linux_resources(&r, &FakeHost::default()).unwrap();
    assert_eq!((out.memory().unwrap().limit(), out.cpu().clone().unwrap().shares()), (Some(1 << 30), Some(2)));
    assert!(out.devices().is_none(), "device rules stay as they are");
}
