//! CRI statistics of containers and pod sandboxes: cpu, memory and process counts from each
//! container's cgroup v2 directory (`cgroup`), the writable layer's size (`layer`), and a
//! pod's network counters from its network namespace (`network`).
//!
//! `usage_nano_cores` needs two samples: the collector keeps the last cpu reading of each
//! container and pod, and reports the rate since then (unset on the first request, as the
//! kubelet then computes nothing either). A figure whose controller the cgroup lacks is
//! left unset rather than reported as zero.

pub mod cgroup;
pub mod layer;
pub mod network;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use cri_api::runtime::v1 as cri;

use crate::cri::container::record::ContainerRecord;
use crate::cri::sandbox::Sandbox;
use cgroup::CgroupSample;

/// The interface the kubelet treats as the pod's own.
const DEFAULT_INTERFACE: &str = "eth0";

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// Reads statistics and remembers the last cpu sample of each container and pod.
pub struct StatsCollector {
    /// The cgroup v2 mount (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`); none: no stats.
    hierarchy: Option<PathBuf>,
    /// Our own cgroup, the base of relative cgroup paths.
    own: PathBuf,
    /// Where container directories live: the writable layers' file system.
    layers_root: PathBuf,
    previous: Mutex<HashMap<String, (i64, u64)>>,
}

/// A container's statistics and the raw sample they came from (for its pod's sums).
pub struct Measured {
    pub stats: cri::ContainerStats,
    pub sample: Option<CgroupSample>,
}

impl StatsCollector {
    pub fn new(layers_root: PathBuf) -> StatsCollector {
        let hierarchy = runtime_rs::cgroups::find_hierarchy().ok();
        let own = runtime_rs::cgroups::own_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default());
        StatsCollector { hierarchy, own, layers_root, previous: Mutex::new(HashMap::new()) }
    }

    /// The container's cgroup directory, from its spec's `linux.cgroupsPath`.
    pub fn cgroup_dir(&self, record: &ContainerRecord) -> Option<PathBuf> {
        let hierarchy = self.hierarchy.as_ref()?;
        let spec = oci_spec::runtime::Spec::load(record.dir.join("config.json")).ok()?;
        Some(crate::cri::container::manager::spec_cgroup_dir(hierarchy, &self.own, &spec, &record.id))
    }

    /// The rate since the last cpu sample under `key`, which this one replaces.
    fn rate(&self, key: &str, at_ns: i64, cpu_ns: u64) -> Option<u64> {
        let mut previous = self.previous.lock().expect("stats lock");
        let rate = cgroup::nano_cores(previous.get(key).copied(), (at_ns, cpu_ns));
        previous.insert(key.to_string(), (at_ns, cpu_ns));
        rate
    }

    /// Forgets the samples of everything not in `keep` (removed containers and pods).
    pub fn retain(&self, keep: &[&str]) {
        self.previous.lock().expect("stats lock").retain(|k, _| keep.contains(&k.as_str()));
    }

    fn cpu(&self, key: &str, s: &CgroupSample) -> Option<cri::CpuUsage> {
        let cpu_ns = s.cpu_ns?;
        Some(cri::CpuUsage {
            timestamp: s.at_ns,
            usage_core_nano_seconds: value(cpu_ns),
            usage_nano_cores: self.rate(key, s.at_ns, cpu_ns).and_then(value),
        })
    }

    /// A container's statistics; a container without a cgroup (exited) has only its
    /// attributes and writable layer.
    pub fn container(&self, record: &ContainerRecord) -> Measured {
        let at_ns = now_ns();
        let sample = self.cgroup_dir(record).and_then(|d| cgroup::read_dir(&d, at_ns));
        let upper = record.rootfs_dir().join("upper");
        let writable_layer = match layer::usage(&upper) {
            Ok(u) => Some(cri::FilesystemUsage {
                timestamp: at_ns,
                fs_id: Some(cri::FilesystemIdentifier { mountpoint: self.layers_root.display().to_string() }),
                used_bytes: value(u.bytes),
                inodes_used: value(u.inodes),
            }),
            Err(e) => {
                tracing::warn!(container = %record.id, "measuring the writable layer {}: {e}", upper.display());
                None
            }
        };
        let stats = cri::ContainerStats {
            attributes: Some(container_attributes(record)),
            cpu: sample.as_ref().and_then(|s| self.cpu(&record.id, s)),
            memory: sample.as_ref().and_then(memory),
            writable_layer,
            swap: sample.as_ref().and_then(swap),
        };
        Measured { stats, sample }
    }

    /// A pod's statistics: the sums of its containers' samples, its network counters and
    /// the containers' own statistics.
    pub fn sandbox(&self, sandbox: &Sandbox, containers: Vec<Measured>) -> cri::PodSandboxStats {
        let at_ns = now_ns();
        let samples: Vec<CgroupSample> = containers.iter().filter_map(|m| m.sample).collect();
        let total = cgroup::sum(&samples, at_ns);
        let network = sandbox.namespaces.net.as_deref().and_then(|ns| match network::read_in(ns) {
            Ok(ifaces) => Some(network_usage(at_ns, ifaces)),
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, "reading network counters in {}: {e}", ns.display());
                None
            }
        });
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: Some(sandbox.metadata.to_cri()),
                labels: sandbox.labels.clone().into_iter().collect(),
                annotations: sandbox.annotations.clone().into_iter().collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: if samples.is_empty() { None } else { self.cpu(&sandbox.id, &total) },
                memory: memory(&total),
                network,
                process: total.processes.map(|n| cri::ProcessUsage { timestamp: at_ns, process_count: value(n) }),
                containers: containers.into_iter().map(|m| m.stats).collect(),
            }),
            windows: None,
        }
    }
}

fn container_attributes(r: &ContainerRecord) -> cri::ContainerAttributes {
    cri::ContainerAttributes {
        id: r.id.clone(),
        metadata: Some(cri::ContainerMetadata { name: r.metadata_name.clone(), attempt: r.attempt }),
        labels: r.labels.clone().into_iter().collect(),
        annotations: r.annotations.clone().into_iter().collect(),
    }
}

fn memory(s: &CgroupSample) -> Option<cri::MemoryUsage> {
    let m = s.memory?;
    Some(cri::MemoryUsage {
        timestamp: s.at_ns,
        working_set_bytes: value(m.working_set),
        available_bytes: None,
        usage_bytes: value(m.usage),
        rss_bytes: value(m.rss),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
    })
}

fn swap(s: &CgroupSample) -> Option<cri::SwapUsage> {
    Some(cri::SwapUsage { timestamp: s.at_ns, swap_available_bytes: None, swap_usage_bytes: value(s.swap?) })
}

fn network_usage(at_ns: i64, ifaces: Vec<network::InterfaceCounters>) -> cri::NetworkUsage {
    let usage = |i: &network::InterfaceCounters| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    };
    cri::NetworkUsage {
        timestamp: at_ns,
        default_interface: ifaces.iter().find(|i| i.name == DEFAULT_INTERFACE).map(usage),
        interfaces: ifaces.iter().map(usage).collect(),
    }
}

/// `ListContainerStats`' filter: id and sandbox id as prefixes (crictl passes short ids),
/// every label of the selector.
pub fn container_matches(r: &ContainerRecord, f: &cri::ContainerStatsFilter) -> bool {
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.label_selector.iter().all(|(k, v)| r.labels.get(k) == Some(v))
}

/// `ListPodSandboxStats`' filter, likewise.
pub fn sandbox_matches(s: &Sandbox, f: &cri::PodSandboxStatsFilter) -> bool {
    (f.id.is_empty() || s.id.starts_with(&f.id)) && f.label_selector.iter().all(|(k, v)| s.labels.get(k) == Some(v))
}

/// Where the containers' directories (and so their writable layers) live.
pub fn layers_root(root: &Path) -> PathBuf {
    root.join("containers")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, sandbox: &str, labels: &[(&str, &str)]) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            sandbox_id: sandbox.into(),
            name: format!("{id}_pod_0"),
            metadata_name: id.into(),
            attempt: 0,
            image: "busybox".into(),
            image_ref: "sha256:x".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            annotations: Default::default(),
            created_at: 0,
            started_at: None,
            log_path: PathBuf::new(),
            monitor_pid: 0,
            pid: 0,
            dir: PathBuf::from("/nonexistent").join(id),
            stdio: Default::default(),
        }
    }

    #[test]
    fn container_filters_match_prefixes_and_every_label() {
        let r = record("abc123", "pod456", &[("app", "web"), ("tier", "front")]);
        let f = |id: &str, pod: &str, labels: &[(&str, &str)]| cri::ContainerStatsFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            label_selector: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert!(container_matches(&r, &f("", "", &[])));
        assert!(container_matches(&r, &f("abc", "pod", &[("app", "web")])));
        assert!(!container_matches(&r, &f("abd", "", &[])));
        assert!(!container_matches(&r, &f("", "pod9", &[])));
        assert!(!container_matches(&r, &f("", "", &[("app", "web"), ("tier", "back")])));
    }

    #[test]
    fn the_rate_needs_a_previous_sample_and_forgets_removed_ones() {
        let c = StatsCollector { hierarchy: None, own: "/".into(), layers_root: "/l".into(), previous: Mutex::new(HashMap::new()) };
        assert_eq!(c.rate("a", 1_000_000_000, 0), None);
        assert_eq!(c.rate("a", 2_000_000_000, 250_000_000), Some(250_000_000));
        c.retain(&["b"]);
        assert_eq!(c.rate("a", 3_000_000_000, 300_000_000), None);
    }

    #[test]
    fn a_container_without_a_cgroup_has_attributes_only() {
        let c = StatsCollector { hierarchy: None, own: "/".into(), layers_root: "/l".into(), previous: Mutex::new(HashMap::new()) };
        let m = c.container(&record("x", "p", &[("a", "b")]));
        assert!(m.sample.is_none() && m.stats.cpu.is_none() && m.stats.memory.is_none());
        let attrs = m.stats.attributes.unwrap();
        assert_eq!((attrs.id.as_str(), attrs.labels.get("a").map(String::as_str)), ("x", Some("b")));
        // A missing upper dir measures as empty.
        assert_eq!(m.stats.writable_layer.unwrap().inodes_used, value(0));
    }
}
