use std::collections::BTreeMap;

use cri::security_profile::ProfileType;
use k8s_openapi::api::core::v1::{
    Capabilities, ContainerPort, ExecAction, Lifecycle, LifecycleHandler, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Sysctl,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;

const GI: i64 = 1 << 30;

fn pod(containers: Vec<Container>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some("web-0".into());
    p.metadata.namespace = Some("shop".into());
    p.metadata.uid = Some("u-1".into());
    p.metadata.labels = Some(BTreeMap::from([("app".into(), "web".into())]));
    p.metadata.annotations = Some(BTreeMap::from([("note".into(), "hi".into())]));
    p.spec = Some(PodSpec { containers, dns_policy: Some("None".into()), ..Default::default() });
    p
}

fn container(name: &str) -> Container {
    Container { name: name.into(), image: Some("nginx:1.27".into()), ..Default::default() }
}

fn with_resources(mut c: Container, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
    let list = |items: &[(&str, &str)]| {
        (!items.is_empty()).then(|| items.iter().map(|(k, v)| (k.to_string(), Quantity(v.to_string()))).collect())
    };
    c.resources = Some(ResourceRequirements { requests: list(requests), limits: list(limits), ..Default::default() });
    c
}

fn sandbox_ctx() -> SandboxContext {
    SandboxContext {
        cgroup_parent: "/kubepods/besteffort/podu-1".into(),
        log_directory: "/var/log/pods/shop_web-0_u-1".into(),
        attempt: 1,
        ..Default::default()
    }
}

fn container_ctx() -> ContainerContext {
    ContainerContext {
        image: "sha256:abc".into(),
        restart_count: 2,
        envs: vec![
            cri::KeyValue { key: "GREETING".into(), value: "hello".into() },
            cri::KeyValue { key: "PORT".into(), value: "8080".into() },
        ],
        mounts: vec![cri::Mount {
            container_path: "/data".into(),
            host_path: "/var/lib/x".into(),
            ..Default::default()
        }],
        cgroup_parent: "/kubepods/burstable/podu-1".into(),
        kind: "app",
        node_memory_capacity: 8 * GI,
        ..Default::default()
    }
}

fn spec(p: &mut Pod) -> &mut PodSpec {
    p.spec.as_mut().unwrap()
}

#[test]
fn sandbox_metadata_hostname_labels_and_log_directory() {
    let p = pod(vec![container("web")]);
    let c = sandbox_config(&p, &sandbox_ctx()).unwrap();
    let m = c.metadata.unwrap();
    assert_eq!((m.name.as_str(), m.namespace.as_str(), m.uid.as_str(), m.attempt), ("web-0", "shop", "u-1", 1));
    assert_eq!(c.hostname, "web-0");
    assert_eq!(c.log_directory, "/var/log/pods/shop_web-0_u-1");
    assert_eq!(c.labels["app"], "web");
    assert_eq!(c.labels[labels::POD_NAME], "web-0");
    assert_eq!(c.labels[labels::POD_NAMESPACE], "shop");
    assert_eq!(c.labels[labels::POD_UID], "u-1");
    assert_eq!(c.annotations["note"], "hi");
    assert_eq!(c.linux.unwrap().cgroup_parent, "/kubepods/besteffort/podu-1");
}

#[test]
fn hostname_rules() {
    let mut p = pod(vec![]);
    spec(&mut p).hostname = Some("db".into());
    spec(&mut p).subdomain = Some("dbs".into());
    assert_eq!(sandbox_config(&p, &sandbox_ctx()).unwrap().hostname, "db", "the subdomain is not part of it");
    spec(&mut p).set_hostname_as_fqdn = Some(true);
    let mut ctx = sandbox_ctx();
    ctx.dns.cluster_domain = "cluster.local".into();
    assert_eq!(sandbox_config(&p, &ctx).unwrap().hostname, "db.dbs.shop.svc.cluster.local");
    spec(&mut p).host_network = Some(true);
    assert_eq!(sandbox_config(&p, &ctx).unwrap().hostname, "", "the node's hostname");
    let mut long = pod(vec![]);
    long.metadata.name = Some(format!("{}-x", "a".repeat(62)));
    assert_eq!(sandbox_config(&long, &ctx).unwrap().hostname, "a".repeat(62), "cut at 63 without the trailing dash");
    let mut nameless = pod(vec![]);
    nameless.metadata.uid = None;
    assert!(matches!(sandbox_config(&nameless, &ctx), Err(ConfigError::Invalid { .. })));
}

#[test]
fn sandbox_dns_comes_from_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 192.168.0.1\nsearch lan\n").unwrap();
    let mut p = pod(vec![]);
    spec(&mut p).dns_policy = None;
    let mut ctx = sandbox_ctx();
    ctx.dns = DnsSettings {
        cluster_dns: vec!["10.96.0.10".parse().unwrap()],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: resolv,
    };
    let dns = sandbox_config(&p, &ctx).unwrap().dns_config.unwrap();
    assert_eq!(dns.servers, vec!["10.96.0.10"]);
    assert_eq!(dns.searches, vec!["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan"]);
    ctx.dns.host_resolv_conf = dir.path().join("nope");
    let err = sandbox_config(&p, &ctx).unwrap_err();
    assert!(matches!(&err, ConfigError::ResolvConf { path, .. } if path.ends_with("nope")), "{err}");
}

#[test]
fn host_ports_become_port_mappings() {
    let mut a = container("a");
    a.ports = Some(vec![
        ContainerPort { container_port: 80, host_port: Some(8080), ..Default::default() },
        ContainerPort { container_port: 81, ..Default::default() },
        ContainerPort {
            container_port: 53,
            host_port: Some(5353),
            protocol: Some("UDP".into()),
            host_ip: Some("127.0.0.1".into()),
            ..Default::default()
        },
    ]);
    let mut b = container("b");
    b.ports = Some(vec![ContainerPort {
        container_port: 9,
        host_port: Some(9009),
        protocol: Some("SCTP".into()),
        ..Default::default()
    }]);
    let c = sandbox_config(&pod(vec![a, b]), &sandbox_ctx()).unwrap();
    assert_eq!(
        c.port_mappings,
        vec![
            cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new()
            },
            cri::PortMapping {
                protocol: cri::Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into()
            },
            cri::PortMapping {
                protocol: cri::Protocol::Sctp as i32,
                container_port: 9,
                host_port: 9009,
                host_ip: String::new()
            },
        ]
    );
    let mut bad = container("c");
    bad.ports = Some(vec![ContainerPort {
        container_port: 1,
        host_port: Some(1),
        protocol: Some("ICMP".into()),
        ..Default::default()
    }]);
    assert!(sandbox_config(&pod(vec![bad]), &sandbox_ctx()).unwrap_err().to_string().contains("ICMP"));
}

#[test]
fn sandbox_namespaces_sysctls_and_security() {
    let mut priv_init = container("init");
    priv_init.security_context = Some(SecurityContext { privileged: Some(true), ..Default::default() });
    let mut p = pod(vec![container("web")]);
    spec(&mut p).init_containers = Some(vec![priv_init]);
    spec(&mut p).host_network = Some(true);
    spec(&mut p).share_process_namespace = Some(true);
    spec(&mut p).security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        fs_group: Some(2000),
        supplemental_groups: Some(vec![4000, 2000]),
        sysctls: Some(vec![
            Sysctl { name: "net.core.somaxconn".into(), value: "1024".into() },
            Sysctl { name: "kernel/shm_rmid_forced".into(), value: "1".into() },
        ]),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    });
    let linux = sandbox_config(&p, &sandbox_ctx()).unwrap().linux.unwrap();
    assert_eq!(linux.sysctls["net.core.somaxconn"], "1024");
    assert_eq!(linux.sysctls["kernel.shm_rmid_forced"], "1");
    let sc = linux.security_context.unwrap();
    let ns = sc.namespace_options.unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
    assert_eq!(ns.pid, cri::NamespaceMode::Pod as i32);
    assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
    assert_eq!(sc.run_as_user.unwrap().value, 1000);
    assert_eq!(sc.run_as_group.unwrap().value, 3000);
    assert_eq!(sc.supplemental_groups, vec![2000, 4000]);
    assert!(sc.privileged, "an init container is privileged");
    assert_eq!(sc.seccomp.unwrap().profile_type, ProfileType::RuntimeDefault as i32);

    let plain = sandbox_config(&pod(vec![container("web")]), &sandbox_ctx()).unwrap().linux.unwrap();
    let sc = plain.security_context.unwrap();
    let ns = sc.namespace_options.unwrap();
    assert_eq!((ns.network, ns.pid), (cri::NamespaceMode::Pod as i32, cri::NamespaceMode::Container as i32));
    assert!(!sc.privileged);
    assert_eq!(sc.seccomp.unwrap().profile_type, ProfileType::Unconfined as i32);
}

#[test]
fn sandbox_resources_and_overhead() {
    let mut p = pod(vec![
        with_resources(container("a"), &[("cpu", "250m")], &[("cpu", "500m"), ("memory", "128Mi")]),
        with_resources(container("b"), &[], &[("cpu", "1"), ("memory", "64Mi")]),
    ]);
    spec(&mut p).overhead =
        Some(BTreeMap::from([("cpu".into(), Quantity("100m".into())), ("memory".into(), Quantity("10Mi".into()))]));
    let linux = sandbox_config(&p, &sandbox_ctx()).unwrap().linux.unwrap();
    let r = linux.resources.unwrap();
    assert_eq!(r.cpu_shares, 1350 * 1024 / 1000, "250m + 1 (defaulted from the limit) + 100m overhead");
    assert_eq!(r.cpu_quota, 160_000);
    assert_eq!(r.memory_limit_in_bytes, (128 + 64 + 10) << 20);
    let o = linux.overhead.unwrap();
    assert_eq!((o.cpu_shares, o.cpu_quota, o.memory_limit_in_bytes), (102, 10_000, 10 << 20));
    let none = sandbox_config(&pod(vec![container("a")]), &sandbox_ctx()).unwrap().linux.unwrap();
    assert!(none.overhead.is_none());
    let r = none.resources.unwrap();
    assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes), (2, 0, 0));
}

#[test]
fn container_basics() {
    let mut c = container("web");
    c.command = Some(vec!["/bin/sh".into(), "-c".into()]);
    c.args = Some(vec!["echo $(GREETING) on $(PORT) $(MISSING) $$(PORT)".into()]);
    c.working_dir = Some("/srv".into());
    c.stdin = Some(true);
    c.tty = Some(true);
    let p = pod(vec![c.clone()]);
    let cfg = container_config(&p, &c, &container_ctx()).unwrap();
    let m = cfg.metadata.as_ref().unwrap();
    assert_eq!((m.name.as_str(), m.attempt), ("web", 2));
    let image = cfg.image.as_ref().unwrap();
    assert_eq!((image.image.as_str(), image.user_specified_image.as_str()), ("sha256:abc", "nginx:1.27"));
    assert_eq!(cfg.command, vec!["/bin/sh", "-c"]);
    assert_eq!(cfg.args, vec!["echo hello on 8080 $(MISSING) $(PORT)"]);
    assert_eq!(cfg.working_dir, "/srv");
    assert_eq!(cfg.envs.len(), 2);
    assert_eq!(cfg.mounts[0].container_path, "/data");
    assert_eq!(cfg.log_path, "web/2.log");
    assert!(cfg.stdin && !cfg.stdin_once && cfg.tty);
}

#[test]
fn container_labels_and_annotations() {
    let mut c = container("web");
    c.lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction { command: Some(vec!["drain".into()]) }),
            ..Default::default()
        }),
        ..Default::default()
    });
    c.ports = Some(vec![ContainerPort { container_port: 80, name: Some("http".into()), ..Default::default() }]);
    let mut p = pod(vec![c.clone()]);
    spec(&mut p).termination_grace_period_seconds = Some(45);
    let mut ctx = container_ctx();
    ctx.kind = "sidecar";
    let cfg = container_config(&p, &c, &ctx).unwrap();
    assert_eq!(cfg.labels.len(), 5, "the kubelet's labels only: {:?}", cfg.labels);
    assert_eq!(cfg.labels[labels::CONTAINER_NAME], "web");
    assert_eq!(cfg.labels[labels::CONTAINER_TYPE], "sidecar");
    assert_eq!(cfg.labels[labels::POD_UID], "u-1");
    let a = &cfg.annotations;
    assert_eq!(a[labels::CONTAINER_HASH], container_hash(&c));
    assert_eq!(a[labels::RESTART_COUNT], "2");
    assert_eq!(a[labels::TERMINATION_MESSAGE_PATH], "/dev/termination-log");
    assert_eq!(a[labels::TERMINATION_MESSAGE_POLICY], "File");
    assert_eq!(a[labels::TERMINATION_GRACE_PERIOD], "45");
    assert_eq!(a[labels::PRE_STOP_HANDLER], r#"{"exec":{"command":["drain"]}}"#);
    assert_eq!(a[labels::CONTAINER_PORTS], r#"[{"containerPort":80,"name":"http"}]"#);
    let plain = container_config(&pod(vec![container("x")]), &container("x"), &container_ctx()).unwrap();
    assert!(!plain.annotations.contains_key(labels::PRE_STOP_HANDLER));
    assert!(!plain.annotations.contains_key(labels::TERMINATION_GRACE_PERIOD));
}

fn resources_of(p: &Pod, c: &Container) -> cri::LinuxContainerResources {
    container_config(p, c, &container_ctx()).unwrap().linux.unwrap().resources.unwrap()
}

#[test]
fn cpu_and_memory_math() {
    let c =
        with_resources(container("a"), &[("cpu", "250m"), ("memory", "1Gi")], &[("cpu", "500m"), ("memory", "2Gi")]);
    let r = resources_of(&pod(vec![c.clone()]), &c);
    assert_eq!(r.cpu_shares, 256);
    assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 50_000));
    assert_eq!(r.memory_limit_in_bytes, 2 * GI);

    let tiny = with_resources(container("a"), &[("cpu", "1m")], &[("cpu", "1m")]);
    let r = resources_of(&pod(vec![tiny.clone()]), &tiny);
    assert_eq!((r.cpu_shares, r.cpu_quota), (2, 1000), "minimum shares and quota");

    let limit_only = with_resources(container("a"), &[], &[("cpu", "2")]);
    let r = resources_of(&pod(vec![limit_only.clone()]), &limit_only);
    assert_eq!((r.cpu_shares, r.cpu_quota), (2048, 200_000), "shares from the limit");

    let none = container("a");
    let r = resources_of(&pod(vec![none.clone()]), &none);
    assert_eq!((r.cpu_shares, r.cpu_period, r.cpu_quota, r.memory_limit_in_bytes), (2, 0, 0, 0));

    let huge =
        with_resources(container("a"), &[], &[("hugepages-2Mi", "100Mi"), ("hugepages-1Gi", "2Gi"), ("memory", "1Gi")]);
    let r = resources_of(&pod(vec![huge.clone()]), &huge);
    let mut pages: Vec<(String, u64)> = r.hugepage_limits.iter().map(|h| (h.page_size.clone(), h.limit)).collect();
    pages.sort();
    assert_eq!(pages, vec![("1GB".to_string(), 2 << 30), ("2MB".to_string(), 100 << 20)]);
}

#[test]
fn oom_score_by_qos() {
    let g = with_resources(container("a"), &[], &[("cpu", "1"), ("memory", "1Gi")]);
    assert_eq!(resources_of(&pod(vec![g.clone()]), &g).oom_score_adj, -997);
    let be = container("a");
    assert_eq!(resources_of(&pod(vec![be.clone()]), &be).oom_score_adj, 1000);
    // 2 GiB of 8: 1000 - 250.
    let b = with_resources(container("a"), &[("memory", "2Gi")], &[]);
    assert_eq!(resources_of(&pod(vec![b.clone()]), &b).oom_score_adj, 750);
    let all = with_resources(container("a"), &[("memory", "8Gi")], &[]);
    assert_eq!(resources_of(&pod(vec![all.clone()]), &all).oom_score_adj, 3, "never as low as Guaranteed");
    let cpu_only = with_resources(container("a"), &[("cpu", "1")], &[]);
    assert_eq!(resources_of(&pod(vec![cpu_only.clone()]), &cpu_only).oom_score_adj, 999, "never as high as BestEffort");
    let mut critical = pod(vec![be.clone()]);
    spec(&mut critical).priority_class_name = Some("system-node-critical".into());
    assert_eq!(resources_of(&critical, &be).oom_score_adj, -997);
    // A sidecar gets no more than the app containers.
    let mut sidecar = with_resources(container("s"), &[("cpu", "1")], &[]);
    sidecar.restart_policy = Some("Always".into());
    let mut p = pod(vec![b.clone()]);
    spec(&mut p).init_containers = Some(vec![sidecar.clone()]);
    assert_eq!(resources_of(&p, &sidecar).oom_score_adj, 750);
}

#[test]
fn container_security_context_merges_pod_and_container() {
    let mut c = container("a");
    c.security_context = Some(SecurityContext {
        run_as_user: Some(2000),
        capabilities: Some(Capabilities { add: Some(vec!["NET_ADMIN".into()]), drop: Some(vec!["ALL".into()]) }),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        seccomp_profile: Some(SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("profiles/audit.json".into()),
        }),
        ..Default::default()
    });
    let mut p = pod(vec![c.clone()]);
    spec(&mut p).host_pid = Some(true);
    spec(&mut p).security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        fs_group: Some(2000),
        supplemental_groups_policy: Some("Strict".into()),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
        ..Default::default()
    });
    let mut ctx = container_ctx();
    ctx.seccomp_root = "/var/lib/k/seccomp".into();
    let sc = container_config(&p, &c, &ctx).unwrap().linux.unwrap().security_context.unwrap();
    assert_eq!(sc.run_as_user.unwrap().value, 2000, "the container's wins");
    assert_eq!(sc.run_as_group.unwrap().value, 3000, "the pod's fills in");
    assert_eq!(sc.supplemental_groups, vec![2000]);
    assert_eq!(sc.supplemental_groups_policy, cri::SupplementalGroupsPolicy::Strict as i32);
    let caps = sc.capabilities.unwrap();
    assert_eq!(
        (caps.add_capabilities, caps.drop_capabilities),
        (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
    );
    assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
    let seccomp = sc.seccomp.unwrap();
    assert_eq!(seccomp.profile_type, ProfileType::Localhost as i32);
    assert_eq!(seccomp.localhost_ref, "/var/lib/k/seccomp/profiles/audit.json");
    assert_eq!(sc.namespace_options.unwrap().pid, cri::NamespaceMode::Node as i32);
    assert!(sc.masked_paths.is_empty() && sc.readonly_paths.is_empty(), "the runtime's defaults");

    // Without its own seccomp profile the container takes the pod's; with neither, Unconfined.
    let plain = container("b");
    let sc = container_config(&p, &plain, &ctx).unwrap().linux.unwrap().security_context.unwrap();
    assert_eq!(sc.seccomp.unwrap().profile_type, ProfileType::RuntimeDefault as i32);
    assert_eq!(sc.run_as_user.unwrap().value, 1000);
    assert!(!sc.no_new_privs, "allowPrivilegeEscalation unset");
    let bare = pod(vec![plain.clone()]);
    let sc = container_config(&bare, &plain, &ctx).unwrap().linux.unwrap().security_context.unwrap();
    assert_eq!(sc.seccomp.unwrap().profile_type, ProfileType::Unconfined as i32);
    assert!(sc.run_as_user.is_none() && sc.supplemental_groups.is_empty());
}

#[test]
fn bad_security_settings_name_the_field() {
    let mut c = container("a");
    c.security_context = Some(SecurityContext {
        seccomp_profile: Some(SeccompProfile { type_: "Localhost".into(), localhost_profile: Some("../etc/x".into()) }),
        ..Default::default()
    });
    let err = container_config(&pod(vec![c.clone()]), &c, &container_ctx()).unwrap_err();
    assert!(err.to_string().contains("seccompProfile.localhostProfile"), "{err}");
    c.security_context =
        Some(SecurityContext { proc_mount: Some("Unmasked".into()), privileged: Some(true), ..Default::default() });
    let err = container_config(&pod(vec![c.clone()]), &c, &container_ctx()).unwrap_err();
    assert!(err.to_string().contains("procMount"), "{err}");
}

#[test]
fn run_as_non_root_is_checked_against_the_user() {
    let mut c = container("a");
    let p = pod(vec![c.clone()]);
    assert_eq!(verify_run_as_non_root(&p, &c, ""), Ok(()), "not asked for");
    c.security_context = Some(SecurityContext { run_as_non_root: Some(true), ..Default::default() });
    let err = verify_run_as_non_root(&p, &c, "").unwrap_err().to_string();
    assert_eq!(err, "container has runAsNonRoot and image will run as root (pod: \"web-0_shop(u-1)\", container: a)");
    assert!(verify_run_as_non_root(&p, &c, "0:0").is_err());
    assert_eq!(verify_run_as_non_root(&p, &c, "1000:1000"), Ok(()));
    let err = verify_run_as_non_root(&p, &c, "nginx").unwrap_err().to_string();
    assert!(
        err.starts_with("container has runAsNonRoot and image has non-numeric user (nginx), cannot verify"),
        "{err}"
    );
    // runAsUser decides when given, the pod's runAsNonRoot applies to containers.
    let mut p2 = pod(vec![container("b")]);
    spec(&mut p2).security_context =
        Some(PodSecurityContext { run_as_non_root: Some(true), run_as_user: Some(0), ..Default::default() });
    let err = verify_run_as_non_root(&p2, &container("b"), "1000").unwrap_err().to_string();
    assert!(err.starts_with("container's runAsUser breaks non-root policy"), "{err}");
    spec(&mut p2).security_context.as_mut().unwrap().run_as_user = Some(1000);
    assert_eq!(verify_run_as_non_root(&p2, &container("b"), ""), Ok(()));
}
