//! The Summary API (`/stats/summary`, upstream's stats/v1alpha1 shape) that metrics-server
//! and `kubectl top` read: the node's figures from the machine, the pods' from the CRI
//! runtime's ListPodSandboxStats (converted here with [`pods_from_cri`]).

use async_trait::async_trait;
use cri_api::runtime::v1 as cri;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    pub time: String,
    /// The default interface's figures, inline as upstream has them.
    #[serde(flatten)]
    pub default: InterfaceStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    pub name: String,
    #[serde(flatten)]
    pub fs: FsStats,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume: Vec<VolumeStats>,
}

/// Where the Summary's figures come from; the integrator implements it (the node's from
/// `node::machine`, the pods' from CRI ListPodSandboxStats through [`pods_from_cri`]).
#[async_trait]
pub trait StatsProvider: Send + Sync {
    async fn summary(&self) -> Result<Summary, String>;
}

/// A CRI timestamp (nanoseconds since the epoch) in RFC 3339, now when unset.
fn time(nanos: i64) -> String {
    match nanos {
        0 => Timestamp::now().to_string(),
        n => Timestamp::from_nanosecond(n as i128).unwrap_or_else(|_| Timestamp::now()).to_string(),
    }
}

fn value(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

fn cpu(c: &Option<cri::CpuUsage>) -> Option<CpuStats> {
    c.as_ref().map(|c| CpuStats { time: time(c.timestamp), usage_nano_cores: value(&c.usage_nano_cores), usage_core_nano_seconds: value(&c.usage_core_nano_seconds) })
}

fn memory(m: &Option<cri::MemoryUsage>) -> Option<MemoryStats> {
    m.as_ref().map(|m| MemoryStats {
        time: time(m.timestamp),
        available_bytes: value(&m.available_bytes),
        usage_bytes: value(&m.usage_bytes),
        working_set_bytes: value(&m.working_set_bytes),
        rss_bytes: value(&m.rss_bytes),
    })
}

fn interface(i: &cri::NetworkInterfaceUsage) -> InterfaceStats {
    InterfaceStats { name: i.name.clone(), rx_bytes: value(&i.rx_bytes), rx_errors: value(&i.rx_errors), tx_bytes: value(&i.tx_bytes), tx_errors: value(&i.tx_errors) }
}

/// The pods' part of the Summary from CRI ListPodSandboxStats.
pub fn pods_from_cri(stats: &[cri::PodSandboxStats]) -> Vec<PodStats> {
    stats
        .iter()
        .filter_map(|s| {
            let meta = s.attributes.as_ref()?.metadata.as_ref()?;
            let linux = s.linux.as_ref();
            Some(PodStats {
                pod_ref: PodReference { name: meta.name.clone(), namespace: meta.namespace.clone(), uid: meta.uid.clone() },
                start_time: None,
                containers: linux
                    .map(|l| &l.containers[..])
                    .unwrap_or_default()
                    .iter()
                    .map(|c| ContainerStats {
                        name: c.attributes.as_ref().and_then(|a| a.metadata.as_ref()).map(|m| m.name.clone()).unwrap_or_default(),
                        start_time: None,
                        cpu: cpu(&c.cpu),
                        memory: memory(&c.memory),
                        rootfs: c.writable_layer.as_ref().map(|w| FsStats { time: time(w.timestamp), used_bytes: value(&w.used_bytes), ..Default::default() }),
                    })
                    .collect(),
                cpu: linux.and_then(|l| cpu(&l.cpu)),
                memory: linux.and_then(|l| memory(&l.memory)),
                network: linux.and_then(|l| l.network.as_ref()).map(|n| NetworkStats {
                    time: time(n.timestamp),
                    default: n.default_interface.as_ref().map(interface).unwrap_or_default(),
                    interfaces: n.interfaces.iter().map(interface).collect(),
                }),
                volume: Vec::new(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_pod_stats_become_the_summary_shape() {
        let stats = cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "sb".into(),
                metadata: Some(cri::PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "default".into(), attempt: 0 }),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage { timestamp: 1_000_000_000, usage_nano_cores: Some(cri::UInt64Value { value: 5_000_000 }), ..Default::default() }),
                containers: vec![cri::ContainerStats {
                    attributes: Some(cri::ContainerAttributes { metadata: Some(cri::ContainerMetadata { name: "app".into(), attempt: 0 }), ..Default::default() }),
                    memory: Some(cri::MemoryUsage { timestamp: 1, working_set_bytes: Some(cri::UInt64Value { value: 1 << 20 }), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = pods_from_cri(&[stats]);
        let json = serde_json::to_value(Summary { node: NodeStats { node_name: "n".into(), ..Default::default() }, pods }).unwrap();
        assert_eq!(json["node"]["nodeName"], "n");
        let pod = &json["pods"][0];
        assert_eq!(pod["podRef"], serde_json::json!({"name": "web", "namespace": "default", "uid": "u1"}));
        assert_eq!(pod["cpu"]["usageNanoCores"], 5_000_000);
        assert_eq!(pod["cpu"]["time"], "1970-01-01T00:00:01Z");
        assert_eq!(pod["containers"][0]["name"], "app");
        assert_eq!(pod["containers"][0]["memory"]["workingSetBytes"], 1 << 20);
    }
}

/// The node's part of the Summary from the machine: memory and the node filesystem from
/// `node::machine`, CPU from /proc/stat through a [`CpuSampler`].
pub fn node_stats(node_name: &str, start_time: Timestamp, memory_total: u64, usage: &crate::agent::node::MachineUsage, cpu: Option<CpuStats>) -> NodeStats {
    let now = Timestamp::now().to_string();
    let used = memory_total.saturating_sub(usage.memory_available_bytes);
    NodeStats {
        node_name: node_name.to_string(),
        start_time: Some(start_time.to_string()),
        cpu,
        memory: Some(MemoryStats { time: now.clone(), available_bytes: Some(usage.memory_available_bytes), usage_bytes: Some(used), working_set_bytes: Some(used), rss_bytes: None }),
        network: None,
        fs: Some(FsStats {
            time: now,
            available_bytes: Some(usage.fs_available_bytes),
            capacity_bytes: Some(usage.fs_capacity_bytes),
            used_bytes: Some(usage.fs_capacity_bytes.saturating_sub(usage.fs_available_bytes)),
        }),
    }
}

/// The host's CPU time from /proc/stat's `cpu` line, and its rate since the last sample.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// Busy time in nanoseconds from a /proc/stat `cpu` line (user, nice, system, irq,
/// softirq, steal; idle and iowait left out), at USER_HZ 100.
pub fn busy_nanos(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let ticks = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum::<u64>();
    Some(ticks * 10_000_000)
}

impl CpuSampler {
    /// Read /proc/stat now; None when it cannot be read.
    pub fn sample(&self) -> Option<CpuStats> {
        let total = busy_nanos(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(self.observe(std::time::Instant::now(), total))
    }

    fn observe(&self, at: std::time::Instant, total: u64) -> CpuStats {
        let mut last = self.last.lock().unwrap();
        let rate = last.and_then(|(t, prev)| {
            let secs = at.duration_since(t).as_secs_f64();
            (secs > 0.0).then(|| (total.saturating_sub(prev) as f64 / secs) as u64)
        });
        *last = Some((at, total));
        CpuStats { time: Timestamp::now().to_string(), usage_nano_cores: rate, usage_core_nano_seconds: Some(total) }
    }
}

#[cfg(test)]
mod node_tests {
    use super::*;

    #[test]
    fn proc_stat_busy_time_and_its_rate() {
        assert_eq!(busy_nanos("cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 1 2 3\n"), Some((100 + 5 + 50 + 3 + 2 + 1) * 10_000_000));
        let s = CpuSampler::default();
        let t = std::time::Instant::now();
        assert_eq!(s.observe(t, 1_000).usage_nano_cores, None);
        let second = s.observe(t + std::time::Duration::from_secs(2), 1_000 + 4_000_000_000);
        assert_eq!(second.usage_nano_cores, Some(2_000_000_000));
        assert_eq!(second.usage_core_nano_seconds, Some(4_000_001_000));
    }

    #[test]
    fn node_memory_and_fs() {
        let usage = crate::agent::node::MachineUsage { memory_available_bytes: 3 << 30, fs_capacity_bytes: 100, fs_available_bytes: 40 };
        let n = node_stats("node-a", Timestamp::from_second(0).unwrap(), 8 << 30, &usage, None);
        let m = n.memory.unwrap();
        assert_eq!((m.available_bytes, m.working_set_bytes), (Some(3 << 30), Some(5 << 30)));
        assert_eq!(n.fs.unwrap().used_bytes, Some(60));
        assert_eq!(n.start_time.as_deref(), Some("1970-01-01T00:00:00Z"));
    }
}
