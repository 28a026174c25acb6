//! Our CNI plugins under a real CNI runtime: containerd's CRI plugin, driven through the CRI
//! `runtime.v1` API as the kubelet drives it, makes a pod sandbox and gets its network from
//! krs-bridge, krs-host-local and krs-portmap. Root only; needs Debian's containerd, runc and
//! containernetworking-plugins (for `loopback`, which CRI always runs for the pod's `lo`), and
//! busybox-static for the images.
//!
//! containerd runs the plugins in its own network namespace, the host's: the bridge
//! `krsctrd0` (10.87.0.0/24), the host ends of the veths and the hostPort rules are made on
//! the host, and [`HostNetwork`] removes them (and what else the plugins change there) when
//! the test ends, failed or not. Everything else containerd makes goes with
//! [`Containerd`]'s guard.
//!
//! With `KRS_CNI_REFERENCE=1` the same test runs the reference plugins of
//! containernetworking-plugins (bridge, host-local, portmap) instead: what fails then is the
//! test or the machine, not our plugins. `KRS_CNI_REFERENCE=bridge` swaps only the bridge,
//! and so on; `KRS_CNI_BIN_DIR` takes our plugins from another build.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cri_api::runtime::v1 as cri;
use cri_api::RuntimeServiceClient;
use test_support::containerd::{Containerd, CriOptions, BUSYBOX_IMAGE};
use test_support::text;

const BRIDGE: &str = "krsctrd0";
const NETWORK: &str = "krs-ctrd";
const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 87, 0, 0), 24);
/// What the container's server answers each connection with.
const GREETING: &str = "hi from the pod";
/// Where Debian's containernetworking-plugins are.
const REFERENCE_DIR: &str = "/usr/lib/cni";

fn install(src: &Path, bin_dir: &Path) {
    assert!(src.is_file(), "{} is missing (the reference plugins: apt-get install containernetworking-plugins)", src.display());
    std::fs::copy(src, bin_dir.join(src.file_name().unwrap())).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
}

/// The plugins under test, copied into a directory of the test's own (CRI's `cni.bin_dir`),
/// so a concurrent rebuild of target/ cannot change them mid-test.
struct Plugins {
    bin_dir: PathBuf,
    bridge: String,
    ipam: String,
    portmap: String,
}

/// Our plugins and the reference ones standing in for them.
const PLUGINS: [(&str, &str); 3] = [
    (env!("CARGO_BIN_EXE_krs-bridge"), "bridge"),
    (env!("CARGO_BIN_EXE_krs-host-local"), "host-local"),
    (env!("CARGO_BIN_EXE_krs-portmap"), "portmap"),
];

impl Plugins {
    /// Ours, from this build, or from `KRS_CNI_BIN_DIR` if set; `KRS_CNI_REFERENCE` names
    /// the ones to take from containernetworking-plugins instead (`bridge,portmap`; `1` for
    /// all three), to tell a fault of the test or the machine from one of our plugins.
    fn install(bin_dir: PathBuf) -> Plugins {
        std::fs::create_dir(&bin_dir).unwrap();
        let reference = std::env::var("KRS_CNI_REFERENCE").unwrap_or_default();
        let reference: Vec<&str> = match reference.as_str() {
            "1" | "all" => PLUGINS.iter().map(|p| p.1).collect(),
            list => list.split(',').filter(|s| !s.is_empty()).collect(),
        };
        for r in &reference {
            assert!(PLUGINS.iter().any(|p| p.1 == *r), "KRS_CNI_REFERENCE: no reference plugin {r:?}; expected some of bridge,host-local,portmap or 1");
        }
        let ours_dir = std::env::var_os("KRS_CNI_BIN_DIR").map(PathBuf::from);
        let mut types = Vec::new();
        for (ours, theirs) in PLUGINS {
            let src = if reference.contains(&theirs) {
                Path::new(REFERENCE_DIR).join(theirs)
            } else if let Some(dir) = &ours_dir {
                dir.join(Path::new(ours).file_name().unwrap())
            } else {
                PathBuf::from(ours)
            };
            install(&src, &bin_dir);
            types.push(src.file_name().unwrap().to_string_lossy().into_owned());
        }
        // CRI sets up the pod's lo with a plugin named `loopback`, always; we have none of
        // our own, so it is the reference one.
        install(&Path::new(REFERENCE_DIR).join("loopback"), &bin_dir);
        eprintln!("plugins: {types:?}");
        let [bridge, ipam, portmap] = <[String; 3]>::try_from(types).unwrap();
        Plugins { bin_dir, bridge, ipam, portmap }
    }

    fn conflist(&self, ipam_dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NETWORK,
            "plugins": [
                {
                    "type": self.bridge,
                    "bridge": BRIDGE,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": self.ipam,
                        "ranges": [[{"subnet": format!("{}/{}", SUBNET.0, SUBNET.1)}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": ipam_dir,
                    }
                },
                {"type": self.portmap, "capabilities": {"portMappings": true}}
            ]
        })
    }
}

/// What the plugins make or change in the host's network namespace, undone on drop: the
/// bridge (and with it its veths, routes and sysctls), the hostPort and masquerade rules if
/// the test made them (our nftables table or our iptables chains, as cni/src/firewall names
/// them; the reference portmap's iptables chains), and `net.ipv4.ip_forward`, which a
/// gateway bridge turns on. Nothing else is touched: a table or chain that was there before
/// the test stays.
struct HostNetwork {
    /// The nftables tables there were before the test (`table inet krs-cni`, ...).
    tables_before: Vec<String>,
    /// The nat chains there were before the test.
    chains_before: Vec<String>,
    ip_forward: String,
}

/// Our plugins' nftables table (cni/src/firewall/nftables.rs).
const NFT_TABLE: &str = "table inet krs-cni";
/// The nat tables iptables-nft makes for the reference portmap or our iptables backend.
const IPTABLES_NFT_TABLES: [(&str, &str); 2] = [("table ip nat", "iptables"), ("table ip6 nat", "ip6tables")];
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// The nat chains of our plugins' iptables backend (`KRS-CNI-HOSTPORTS`, ...) and of the
/// reference portmap (`CNI-HOSTPORT-DNAT`, ..., and `CNI-DN-<hash>` for each pod).
const CHAIN_PREFIXES: [&str; 2] = ["KRS-CNI-", "CNI-"];

impl HostNetwork {
    fn new() -> HostNetwork {
        assert!(
            !link_exists(BRIDGE),
            "the bridge {BRIDGE} exists already: left by an earlier run that was killed? Delete it (ip link delete {BRIDGE}) and run again"
        );
        HostNetwork {
            tables_before: nft_tables(),
            chains_before: nat_chains(),
            ip_forward: std::fs::read_to_string(IP_FORWARD).unwrap_or_default(),
        }
    }
}

impl Drop for HostNetwork {
    fn drop(&mut self) {
        if link_exists(BRIDGE) {
            let _ = Command::new("ip").args(["link", "delete", BRIDGE, "type", "bridge"]).status();
        }
        let new_tables: Vec<String> = nft_tables().into_iter().filter(|t| !self.tables_before.contains(t)).collect();
        if new_tables.iter().any(|t| t == NFT_TABLE) {
            delete_nft_table(NFT_TABLE);
        }
        let made: Vec<String> = nat_chains()
            .into_iter()
            .filter(|c| CHAIN_PREFIXES.iter().any(|p| c.starts_with(p)) && !self.chains_before.contains(c))
            .collect();
        if !made.is_empty() {
            remove_chains(&made);
        }
        // A nat table iptables-nft made during the test, left with nothing but its policies.
        for (table, tool) in IPTABLES_NFT_TABLES {
            if new_tables.iter().any(|t| t == table) {
                let rules = Command::new(tool).args(["-t", "nat", "-S"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
                if rules.lines().all(|l| l.starts_with("-P ")) {
                    delete_nft_table(table);
                }
            }
        }
        if !self.ip_forward.is_empty() && std::fs::read_to_string(IP_FORWARD).unwrap_or_default() != self.ip_forward {
            let _ = std::fs::write(IP_FORWARD, &self.ip_forward);
        }
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", "dev", name]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// The nftables tables, as `nft list tables` names them (`table inet krs-cni`).
fn nft_tables() -> Vec<String> {
    let out = Command::new("nft").args(["list", "tables"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
    out.lines().map(|l| l.trim().to_string()).filter(|l| l.starts_with("table ")).collect()
}

/// `nft delete table <family> <name>` for a table named as [`nft_tables`] names it.
fn delete_nft_table(table: &str) {
    let words: Vec<&str> = table.split_whitespace().skip(1).collect();
    let _ = Command::new("nft").arg("delete").arg("table").args(words).status();
}

/// The user-defined chains of the nat table.
fn nat_chains() -> Vec<String> {
    let out = Command::new("iptables").args(["-t", "nat", "-S"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
    out.lines().filter_map(|l| l.strip_prefix("-N ")).map(str::to_string).collect()
}

/// Remove nat chains the test made: first the rules elsewhere that jump to them (as
/// `iptables -S` prints them, `-A` turned into `-D`), then the chains.
fn remove_chains(chains: &[String]) {
    let out = Command::new("iptables").args(["-t", "nat", "-S"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
    for rule in out.lines().filter(|l| l.starts_with("-A ") && chains.iter().any(|c| jumps_to(l, c))) {
        if chains.iter().any(|c| rule.starts_with(&format!("-A {c} "))) {
            continue; // inside the chains: goes with the flush
        }
        let args = shell_words(&rule.replacen("-A ", "-D ", 1));
        let _ = Command::new("iptables").args(["-t", "nat"]).args(&args).status();
    }
    for c in chains {
        let _ = Command::new("iptables").args(["-t", "nat", "-F", c]).status();
    }
    for c in chains {
        let _ = Command::new("iptables").args(["-t", "nat", "-X", c]).status();
    }
}

/// Whether an `iptables -S` rule jumps or goes to `chain`.
fn jumps_to(rule: &str, chain: &str) -> bool {
    let words: Vec<&str> = rule.split_whitespace().collect();
    words.windows(2).any(|w| (w[0] == "-j" || w[0] == "-g") && w[1] == chain)
}

/// Split an `iptables -S` line into arguments: words, or double-quoted strings (comments).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut started = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            _ => {
                cur.push(ch);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}

/// The host ends of the veths on our bridge.
fn bridge_ports() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link", "show", "master", BRIDGE]).output().expect("run ip");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// The lines of the host's nftables ruleset (ours, and iptables-nft's) that name `ip`.
fn rules_naming(ip: Ipv4Addr) -> Vec<String> {
    let out = Command::new("nft").args(["list", "ruleset"]).output().map(|o| text(&o.stdout)).unwrap_or_default();
    let ip = ip.to_string();
    out.lines()
        .filter(|l| l.match_indices(&ip).any(|(i, _)| !l[i + ip.len()..].starts_with(|c: char| c.is_ascii_digit())))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The addresses host-local holds: in its data directory, one file named after each.
fn allocations(ipam_dir: &Path) -> Vec<String> {
    std::fs::read_dir(ipam_dir.join(NETWORK))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn in_subnet(ip: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - SUBNET.1);
    u32::from(ip) & mask == u32::from(SUBNET.0)
}

/// Connect to `addr` and read what the server says until it closes; retried until `limit`
/// (the server may not listen yet).
fn fetch(addr: SocketAddr, limit: Duration) -> String {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = String::new();
                match s.read_to_string(&mut got) {
                    Ok(_) if !got.is_empty() => return got,
                    Ok(_) => last = "connected, but the server said nothing".into(),
                    Err(e) => last = format!("read: {e}"),
                }
            }
            Err(e) => last = format!("connect: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("nothing from {addr} within {limit:?}; last: {last}");
}

/// A free TCP port on the host for the hostPort (free now; nothing of ours takes it after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn sandbox_config(c: &Containerd, logs: &Path, host_port: u16) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "web".into(),
            uid: format!("krs-ctrd-uid-{}", std::process::id()),
            namespace: "krs-test".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: logs.to_str().unwrap().into(),
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: host_port as i32,
            host_ip: String::new(),
        }],
        linux: Some(cri::LinuxPodSandboxConfig { cgroup_parent: c.cgroup_parent(), ..Default::default() }),
        ..Default::default()
    }
}

fn server_config() -> cri::ContainerConfig {
    let mut command: Vec<String> = ["nc", "-ll", "-p", "80", "-e", "echo"].map(String::from).to_vec();
    command.extend(GREETING.split(' ').map(String::from));
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "server".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
        command,
        log_path: "server.log".into(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Wait until CRI says its network is ready: it has loaded our conflist.
async fn wait_network_ready(rs: &mut RuntimeServiceClient<cri_api::tonic::transport::Channel>, c: &Containerd) {
    let start = Instant::now();
    loop {
        let status = rs.status(cri::StatusRequest { verbose: false }).await.expect("CRI Status").into_inner();
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|k| k.r#type == "NetworkReady" && k.status) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "CRI's network never became ready: {conditions:?}\n{}", c.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
#[ignore = "needs root"]
fn containerd_cri_pod_gets_its_network_from_our_plugins() {
    test_support::require_root();
    let tmp = tempfile::Builder::new().prefix("krs-ctrd-cni-").tempdir().unwrap();
    let plugins = Plugins::install(tmp.path().join("bin"));
    let host = HostNetwork::new();
    let conf_dir = tmp.path().join("net.d");
    let ipam_dir = tmp.path().join("ipam");
    let logs = tmp.path().join("logs");
    for d in [&conf_dir, &ipam_dir, &logs] {
        std::fs::create_dir(d).unwrap();
    }
    let conflist = plugins.conflist(&ipam_dir);
    std::fs::write(conf_dir.join("10-krs-ctrd.conflist"), serde_json::to_vec_pretty(&conflist).unwrap()).unwrap();

    let c = Containerd::start(&CriOptions { cni_bin_dir: plugins.bin_dir.clone(), cni_conf_dir: conf_dir.clone(), net_ns: None, insecure_registries: Vec::new() });
    c.import_pause_image();
    c.import_busybox_image(BUSYBOX_IMAGE, r#"["sh"]"#);
    let host_port = free_port();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (pod_ip, veth) = rt.block_on(async {
        let channel = cri_api::connect(&c.socket).await.expect("connect to CRI");
        let mut rs = RuntimeServiceClient::new(channel);
        let version = rs.version(cri::VersionRequest { version: "v1".into() }).await.expect("CRI Version").into_inner();
        assert_eq!(version.runtime_name, "containerd", "{version:?}");
        wait_network_ready(&mut rs, &c).await;

        // RunPodSandbox runs the chain: bridge + host-local give it an address, portmap its
        // hostPort.
        let config = sandbox_config(&c, &logs, host_port);
        let run = rs
            .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() })
            .await;
        let pod = match run {
            Ok(r) => r.into_inner().pod_sandbox_id,
            Err(e) => panic!("RunPodSandbox failed: {}\ncontainerd log:\n{}", e.message(), c.log_tail(40)),
        };
        let status = rs
            .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: false })
            .await
            .expect("PodSandboxStatus")
            .into_inner()
            .status
            .expect("a sandbox status");
        assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32, "{status:?}");
        let ip: Ipv4Addr = status
            .network
            .as_ref()
            .map(|n| n.ip.as_str())
            .unwrap_or_default()
            .parse()
            .unwrap_or_else(|e| panic!("the sandbox has no IPv4 address ({e}): {:?}", status.network));
        assert!(in_subnet(ip), "pod address {ip} is not in {}/{}", SUBNET.0, SUBNET.1);
        eprintln!("pod {pod} has {ip}; hostPort {host_port}");

        // On the host: one veth on the bridge, one address held by host-local.
        let ports = bridge_ports();
        assert_eq!(ports.len(), 1, "host ends on {BRIDGE}: {ports:?}");
        assert_eq!(allocations(&ipam_dir), vec![ip.to_string()], "host-local's allocations");

        // A server in the pod: reached at the pod's address, and at the hostPort.
        let created = rs
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(server_config()),
                sandbox_config: Some(config.clone()),
            })
            .await;
        let ctr = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => panic!("CreateContainer failed: {}\ncontainerd log:\n{}", e.message(), c.log_tail(40)),
        };
        if let Err(e) = rs.start_container(cri::StartContainerRequest { container_id: ctr.clone() }).await {
            panic!("StartContainer failed: {}\ncontainerd log:\n{}", e.message(), c.log_tail(40));
        }
        // Inside: eth0 has the address, the default route goes through the bridge.
        let exec = rs
            .exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: ["sh", "-c", "ip -4 -o addr show dev eth0; ip route"].map(String::from).to_vec(),
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        let inside = text(&exec.stdout);
        assert_eq!(exec.exit_code, 0, "{inside}{}", text(&exec.stderr));
        assert!(inside.contains(&format!("inet {ip}/{}", SUBNET.1)), "eth0 in the pod:\n{inside}");
        let gateway = Ipv4Addr::from(u32::from(SUBNET.0) + 1);
        assert!(inside.contains(&format!("default via {gateway} dev eth0")), "routes in the pod:\n{inside}");

        let want = format!("{GREETING}\n");
        assert_eq!(fetch(SocketAddr::new(ip.into(), 80), Duration::from_secs(20)), want, "from the pod's address");
        let local = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port);
        assert_eq!(fetch(local, Duration::from_secs(10)), want, "from the hostPort on 127.0.0.1");

        rs.stop_container(cri::StopContainerRequest { container_id: ctr.clone(), timeout: 2 }).await.expect("StopContainer");
        rs.remove_container(cri::RemoveContainerRequest { container_id: ctr }).await.expect("RemoveContainer");

        // StopPodSandbox runs DEL through the chain: the veth, the address and the hostPort
        // rules go.
        if let Err(e) = rs.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await {
            panic!("StopPodSandbox failed: {}\ncontainerd log:\n{}", e.message(), c.log_tail(40));
        }
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.expect("RemovePodSandbox");
        let left = rs.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }).await.expect("ListPodSandbox").into_inner();
        assert!(left.items.is_empty(), "sandboxes left: {:?}", left.items);
        (ip, ports[0].clone())
    });

    let ports = bridge_ports();
    assert!(ports.is_empty(), "veths left on {BRIDGE}: {ports:?}");
    assert!(!link_exists(&veth), "the pod's host-side veth {veth} is left");
    let rules = rules_naming(pod_ip);
    assert!(rules.is_empty(), "firewall rules for {pod_ip} left after the pod is gone: {rules:?}");
    assert!(allocations(&ipam_dir).is_empty(), "host-local still holds {:?}", allocations(&ipam_dir));
    assert!(
        TcpStream::connect_timeout(&SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port), Duration::from_secs(1)).is_err(),
        "the hostPort still answers after the pod is gone"
    );
    c.shutdown();
    drop(host);
}
