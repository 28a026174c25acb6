//! `linux.resources` as cgroup v2 sees it: converted once, at validation, from the spec's
//! cgroup v1 flavoured numbers (shares, blkio weight, memory+swap) to v2 values, then turned
//! into the list of file writes the driver makes. Both steps are pure, so every conversion is
//! unit-tested without root; `linux.resources.devices` is not handled here.

use std::fmt;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::spec::Problem;

/// A limit file's value: a number or `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Max,
    Value(u64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Max => f.write_str("max"),
            Limit::Value(v) => write!(f, "{v}"),
        }
    }
}

/// The container's resources in cgroup v2 terms. `None` or empty: left as the kernel has it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_max: Option<Limit>,
    pub memory_low: Option<Limit>,
    pub memory_swap_max: Option<Limit>,
    pub cpu_weight: Option<u64>,
    /// `cpu.max`: quota (`None`: no quota) and period, in microseconds.
    pub cpu_max: Option<(Option<u64>, u64)>,
    pub cpu_max_burst: Option<u64>,
    pub cpu_idle: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_max: Option<Limit>,
    pub io_weight: Option<u64>,
    /// `(major, minor, weight)` in io.weight's 1..10000.
    pub io_weight_devices: Vec<(u64, u64, u64)>,
    pub io_max: Vec<IoMax>,
    /// `(page size as in the file name, e.g. "2MB", limit in bytes)`.
    pub hugetlb: Vec<(String, u64)>,
    /// `rdma.max` lines: `(device, hca_handle, hca_object)`.
    pub rdma: Vec<(String, Option<u32>, Option<u32>)>,
    /// `linux.resources.unified`, sorted by key; written last, as given.
    pub unified: Vec<(String, String)>,
}

/// One device's `io.max` line; `None` keys are not written (they keep their value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoMax {
    pub major: u64,
    pub minor: u64,
    pub rbps: Option<Limit>,
    pub wbps: Option<Limit>,
    pub riops: Option<Limit>,
    pub wiops: Option<Limit>,
    /// The spec field the line came from first, for errors.
    pub field: String,
}

/// One write the driver makes into the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The spec field this write enforces (`linux.resources.memory.limit`).
    pub field: String,
    pub file: String,
    pub value: String,
    /// Skip the write when the file does not exist (`memory.swap.max` = max without swap
    /// accounting: nothing to enforce). Every other missing file is an error.
    pub optional: bool,
}

impl Write {
    fn new(field: impl Into<String>, file: impl Into<String>, value: impl ToString) -> Write {
        Write { field: field.into(), file: file.into(), value: value.to_string(), optional: false }
    }

    /// The controller that provides the file: the part before the first dot; `cgroup` for
    /// the core files that need none.
    pub fn controller(&self) -> &str {
        self.file.split('.').next().unwrap_or("")
    }
}

const F: &str = "linux.resources";

impl Resources {
    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.writes().is_empty()
    }

    /// Convert `linux.resources`; every problem names its field.
    pub fn from_spec(r: &LinuxResources) -> Result<Resources, Vec<Problem>> {
        let mut out = Resources::default();
        let mut p = Vec::new();
        let mut add = |field: String, message: String| p.push(Problem { field, message });
        if let Some(m) = r.memory() {
            convert_memory(m, &mut out, &mut add);
        }
        if let Some(c) = r.cpu() {
            convert_cpu(c, &mut out, &mut add);
        }
        if let Some(pids) = r.pids() {
            // As runc: 0 leaves pids.max alone, a negative limit removes it.
            out.pids_max = match pids.limit() {
                0 => None,
                n if n < 0 => Some(Limit::Max),
                n => Some(Limit::Value(n as u64)),
            };
        }
        if let Some(b) = r.block_io() {
            convert_block_io(b, &mut out, &mut add);
        }
        for (i, h) in r.hugepage_limits().iter().flatten().enumerate() {
            let field = format!("{F}.hugepageLimits[{i}]");
            if !valid_page_size(h.page_size()) {
                add(format!("{field}.pageSize"), format!("{:?} is not a page size like 2MB or 1GB", h.page_size()));
            } else if h.limit() < 0 {
                add(format!("{field}.limit"), format!("{} must not be negative", h.limit()));
            } else {
                out.hugetlb.push((h.page_size().clone(), h.limit() as u64));
            }
        }
        if let Some(rdma) = r.rdma() {
            let mut devs: Vec<_> = rdma.iter().collect();
            devs.sort_by(|a, b| a.0.cmp(b.0));
            for (dev, l) in devs {
                if dev.is_empty() || dev.contains(char::is_whitespace) {
                    add(format!("{F}.rdma.{dev}"), "is not a device name".into());
                } else if l.hca_handles().is_some() || l.hca_objects().is_some() {
                    out.rdma.push((dev.clone(), l.hca_handles(), l.hca_objects()));
                }
            }
        }
        if let Some(n) = r.network()
            && (n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty()))
        {
            add(format!("{F}.network"), "network class ids and priorities are cgroup v1 controllers (net_cls, net_prio); cgroup v2 has no equivalent".into());
        }
        if let Some(u) = r.unified() {
            let mut keys: Vec<_> = u.iter().collect();
            keys.sort();
            for (k, v) in keys {
                match check_unified_key(k) {
                    Ok(()) => out.unified.push((k.clone(), v.clone())),
                    Err(m) => add(format!("{F}.unified.{k}"), m),
                }
            }
        }
        if p.is_empty() {
            Ok(out)
        } else {
            Err(p)
        }
    }

    /// The files to write, in order: cpuset, cpu, memory, pids, io, hugetlb, rdma, then
    /// `unified` last so it can override anything before it.
    pub fn writes(&self) -> Vec<Write> {
        let mut w = Vec::new();
        if let Some(c) = &self.cpuset_cpus {
            w.push(Write::new(format!("{F}.cpu.cpus"), "cpuset.cpus", c));
        }
        if let Some(m) = &self.cpuset_mems {
            w.push(Write::new(format!("{F}.cpu.mems"), "cpuset.mems", m));
        }
        if let Some(v) = self.cpu_weight {
            w.push(Write::new(format!("{F}.cpu.shares"), "cpu.weight", v));
        }
        if let Some(v) = self.cpu_idle {
            w.push(Write::new(format!("{F}.cpu.idle"), "cpu.idle", v));
        }
        if let Some((quota, period)) = self.cpu_max {
            let q = quota.map_or("max".to_string(), |q| q.to_string());
            w.push(Write::new(format!("{F}.cpu.quota"), "cpu.max", format!("{q} {period}")));
        }
        if let Some(v) = self.cpu_max_burst {
            w.push(Write::new(format!("{F}.cpu.burst"), "cpu.max.burst", v));
        }
        if let Some(v) = self.memory_swap_max {
            let mut s = Write::new(format!("{F}.memory.swap"), "memory.swap.max", v);
            s.optional = v == Limit::Max;
            w.push(s);
        }
        if let Some(v) = self.memory_max {
            w.push(Write::new(format!("{F}.memory.limit"), "memory.max", v));
        }
        if let Some(v) = self.memory_low {
            w.push(Write::new(format!("{F}.memory.reservation"), "memory.low", v));
        }
        if let Some(v) = self.pids_max {
            w.push(Write::new(format!("{F}.pids.limit"), "pids.max", v));
        }
        if let Some(v) = self.io_weight {
            w.push(Write::new(format!("{F}.blockIO.weight"), "io.weight", format!("default {v}")));
        }
        for (i, (maj, min, weight)) in self.io_weight_devices.iter().enumerate() {
            w.push(Write::new(format!("{F}.blockIO.weightDevice[{i}]"), "io.weight", format!("{maj}:{min} {weight}")));
        }
        for m in &self.io_max {
            let mut line = format!("{}:{}", m.major, m.minor);
            for (k, v) in [("rbps", m.rbps), ("wbps", m.wbps), ("riops", m.riops), ("wiops", m.wiops)] {
                if let Some(v) = v {
                    line.push_str(&format!(" {k}={v}"));
                }
            }
            w.push(Write::new(m.field.clone(), "io.max", line));
        }
        for (i, (size, limit)) in self.hugetlb.iter().enumerate() {
            w.push(Write::new(format!("{F}.hugepageLimits[{i}]"), format!("hugetlb.{size}.max"), limit));
        }
        for (dev, handles, objects) in &self.rdma {
            let mut line = dev.clone();
            if let Some(h) = handles {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = objects {
                line.push_str(&format!(" hca_object={o}"));
            }
            w.push(Write::new(format!("{F}.rdma.{dev}"), "rdma.max", line));
        }
        for (k, v) in &self.unified {
            w.push(Write::new(format!("{F}.unified.{k}"), k.clone(), v));
        }
        w
    }
}

/// A memory value from the spec: 0 leaves the file alone, -1 is `max` (as runc).
fn memory_value(v: Option<i64>) -> Result<Option<Limit>, String> {
    match v {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(Limit::Max)),
        Some(n) if n < 0 => Err(format!("{n} is not a limit (use -1 for none)")),
        Some(n) => Ok(Some(Limit::Value(n as u64))),
    }
}

/// `memory.swap.max` from the spec's `swap`, which (as in cgroup v1) is memory plus swap.
pub fn swap_max(swap: i64, limit: i64) -> Result<Option<Limit>, String> {
    // An unlimited memory with no swap given means unlimited swap too, as runc treats it.
    if limit == -1 && swap == 0 {
        return Ok(Some(Limit::Max));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some(Limit::Max)),
        n if n < 0 => return Err(format!("{n} is not a limit (use -1 for none)")),
        _ => {}
    }
    if limit <= 0 {
        return Err("a memory+swap limit needs a memory limit (linux.resources.memory.limit)".into());
    }
    if swap < limit {
        return Err(format!("the memory+swap limit {swap} is below the memory limit {limit}"));
    }
    Ok(Some(Limit::Value((swap - limit) as u64)))
}

fn convert_memory(m: &LinuxMemory, out: &mut Resources, add: &mut impl FnMut(String, String)) {
    let field = format!("{F}.memory");
    match memory_value(m.limit()) {
        Ok(v) => out.memory_max = v,
        Err(e) => add(format!("{field}.limit"), e),
    }
    match memory_value(m.reservation()) {
        Ok(v) => out.memory_low = v,
        Err(e) => add(format!("{field}.reservation"), e),
    }
    if m.swap().is_some() || m.limit() == Some(-1) {
        match swap_max(m.swap().unwrap_or(0), m.limit().unwrap_or(0)) {
            Ok(v) => out.memory_swap_max = v,
            Err(e) => add(format!("{field}.swap"), e),
        }
    }
    if m.kernel().is_some_and(|k| k != 0) {
        add(format!("{field}.kernel"), "kernel memory limits do not exist in cgroup v2".into());
    }
    if m.kernel_tcp().is_some_and(|k| k != 0) {
        add(format!("{field}.kernelTCP"), "kernel TCP memory limits do not exist in cgroup v2".into());
    }
    if m.swappiness().is_some() {
        add(format!("{field}.swappiness"), "a per-cgroup swappiness does not exist in cgroup v2".into());
    }
    if m.disable_oom_killer() == Some(true) {
        add(format!("{field}.disableOOMKiller"), "the OOM killer cannot be disabled in cgroup v2".into());
    }
}

/// runc's linear map of cgroup v1 shares (2..262144) onto cgroup v2's cpu.weight (1..10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262142
}

/// runc's linear map of blkio weight (10..1000) onto io.weight (1..10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    1 + (weight as u64 - 10) * 9999 / 990
}

fn convert_cpu(c: &LinuxCpu, out: &mut Resources, add: &mut impl FnMut(String, String)) {
    let field = format!("{F}.cpu");
    match c.shares() {
        None | Some(0) => {}
        Some(s) if (2..=262144).contains(&s) => out.cpu_weight = Some(shares_to_weight(s)),
        Some(s) => add(format!("{field}.shares"), format!("{s} is outside 2..262144")),
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let period_ok = period == 0 || (1000..=1_000_000).contains(&period);
        if !period_ok {
            add(format!("{field}.period"), format!("{period} is outside 1000..1000000 microseconds"));
        }
        if quota > 0 && quota < 1000 {
            add(format!("{field}.quota"), format!("{quota} is below the kernel's minimum of 1000 microseconds"));
        }
        // The kernel's default period, which runc also writes when none is given.
        let period = if period == 0 { 100_000 } else { period };
        out.cpu_max = Some(((quota > 0).then_some(quota as u64), period));
    }
    out.cpu_max_burst = c.burst();
    match c.idle() {
        None => {}
        Some(v @ (0 | 1)) => out.cpu_idle = Some(v),
        Some(v) => add(format!("{field}.idle"), format!("{v} is not 0 or 1")),
    }
    if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
        add(format!("{field}.realtimeRuntime"), "real-time cpu limits are cgroup v1 only".into());
    }
    for (name, value, slot) in [("cpus", c.cpus(), &mut out.cpuset_cpus), ("mems", c.mems(), &mut out.cpuset_mems)] {
        match value.as_deref() {
            None | Some("") => {}
            Some(list) if valid_cpu_list(list) => *slot = Some(list.to_string()),
            Some(list) => add(format!("{field}.{name}"), format!("{list:?} is not a list like 0-3,6")),
        }
    }
}

fn convert_block_io(b: &LinuxBlockIo, out: &mut Resources, add: &mut impl FnMut(String, String)) {
    let field = format!("{F}.blockIO");
    let weight = |w: u16, f: String, add: &mut dyn FnMut(String, String)| {
        if (10..=1000).contains(&w) {
            Some(blkio_to_io_weight(w))
        } else {
            add(f, format!("{w} is outside 10..1000"));
            None
        }
    };
    match b.weight() {
        None | Some(0) => {}
        Some(w) => out.io_weight = weight(w, format!("{field}.weight"), add),
    }
    if b.leaf_weight().is_some_and(|w| w != 0) {
        add(format!("{field}.leafWeight"), "leaf weights are cgroup v1 only".into());
    }
    for (i, d) in b.weight_device().iter().flatten().enumerate() {
        let f = format!("{field}.weightDevice[{i}]");
        if d.major() < 0 || d.minor() < 0 {
            add(f.clone(), "major and minor must not be negative".into());
            continue;
        }
        if d.leaf_weight().is_some_and(|w| w != 0) {
            add(format!("{f}.leafWeight"), "leaf weights are cgroup v1 only".into());
        }
        if let Some(w) = d.weight().filter(|w| *w != 0)
            && let Some(w) = weight(w, format!("{f}.weight"), add)
        {
            out.io_weight_devices.push((d.major() as u64, d.minor() as u64, w));
        }
    }
    let lists = [
        ("throttleReadBpsDevice", b.throttle_read_bps_device()),
        ("throttleWriteBpsDevice", b.throttle_write_bps_device()),
        ("throttleReadIOPSDevice", b.throttle_read_iops_device()),
        ("throttleWriteIOPSDevice", b.throttle_write_iops_device()),
    ];
    for (k, (name, list)) in lists.into_iter().enumerate() {
        for (i, d) in list.iter().flatten().enumerate() {
            let f = format!("{field}.{name}[{i}]");
            if d.major() < 0 || d.minor() < 0 {
                add(f, "major and minor must not be negative".into());
                continue;
            }
            let (major, minor) = (d.major() as u64, d.minor() as u64);
            // In cgroup v1 a rate of 0 removes the limit; io.max spells that "max".
            let rate = if d.rate() == 0 { Limit::Max } else { Limit::Value(d.rate()) };
            let line = match out.io_max.iter_mut().position(|m| (m.major, m.minor) == (major, minor)) {
                Some(pos) => &mut out.io_max[pos],
                None => {
                    out.io_max.push(IoMax { major, minor, field: f, ..Default::default() });
                    out.io_max.last_mut().expect("just pushed")
                }
            };
            *[&mut line.rbps, &mut line.wbps, &mut line.riops, &mut line.wiops][k] = Some(rate);
        }
    }
}

/// `2MB`, `1GB`, `64KB`: how the kernel names hugetlb files.
fn valid_page_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && ["KB", "MB", "GB"].contains(&unit)
}

/// A cpuset list: `0-3,6,8-9`.
fn valid_cpu_list(s: &str) -> bool {
    let num = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    s.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => num(a) && num(b) && a.parse::<u64>().ok() <= b.parse::<u64>().ok(),
        None => num(part),
    })
}

/// A `unified` key must be a file of the container's own cgroup, and not one of the files
/// the runtime itself manages the cgroup with.
fn check_unified_key(k: &str) -> Result<(), String> {
    const MANAGED: &[&str] = &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.kill", "cgroup.freeze", "cgroup.type"];
    if k.is_empty() || k.contains('/') || k.contains('\0') || k == "." || k == ".." {
        return Err("must be a file name of the container's cgroup, without '/'".into());
    }
    match k.split_once('.') {
        Some((ctrl, rest)) if !ctrl.is_empty() && !rest.is_empty() => {}
        _ => return Err("is not a cgroup v2 file name (controller.file, e.g. memory.high)".into()),
    }
    if MANAGED.contains(&k) {
        return Err("is managed by the runtime and cannot be set".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(json: &str) -> Result<Resources, Vec<String>> {
        let r: LinuxResources = serde_json::from_str(json).unwrap();
        Resources::from_spec(&r).map_err(|p| p.into_iter().map(|p| p.to_string()).collect())
    }

    fn writes(json: &str) -> Vec<(String, String)> {
        resources(json).unwrap().writes().into_iter().map(|w| (w.file, w.value)).collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn shares_map_to_weight_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(writes(r#"{"cpu":{"shares":1024}}"#), pairs(&[("cpu.weight", "39")]));
        assert_eq!(resources(r#"{"cpu":{"shares":1}}"#).unwrap_err(), vec!["linux.resources.cpu.shares: 1 is outside 2..262144"]);
        assert!(writes(r#"{"cpu":{"shares":0}}"#).is_empty());
    }

    #[test]
    fn blkio_weight_maps_to_io_weight_as_runc_does() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(writes(r#"{"blockIO":{"weight":500}}"#), pairs(&[("io.weight", "default 4950")]));
        assert_eq!(
            writes(r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":100}]}}"#),
            pairs(&[("io.weight", "8:0 910")])
        );
        let err = resources(r#"{"blockIO":{"weight":5,"leafWeight":10}}"#).unwrap_err();
        assert_eq!(err, vec!["linux.resources.blockIO.weight: 5 is outside 10..1000", "linux.resources.blockIO.leafWeight: leaf weights are cgroup v1 only"]);
    }

    #[test]
    fn memory_limits_and_swap_follow_runc() {
        assert_eq!(
            writes(r#"{"memory":{"limit":104857600,"reservation":52428800,"swap":209715200}}"#),
            pairs(&[("memory.swap.max", "104857600"), ("memory.max", "104857600"), ("memory.low", "52428800")])
        );
        // -1 is no limit; with no swap given, swap is unlimited too.
        assert_eq!(writes(r#"{"memory":{"limit":-1}}"#), pairs(&[("memory.swap.max", "max"), ("memory.max", "max")]));
        // swap == limit: no swap at all.
        assert_eq!(writes(r#"{"memory":{"limit":1000,"swap":1000}}"#), pairs(&[("memory.swap.max", "0"), ("memory.max", "1000")]));
        assert_eq!(writes(r#"{"memory":{"limit":1000,"swap":-1}}"#), pairs(&[("memory.swap.max", "max"), ("memory.max", "1000")]));
        assert!(writes(r#"{"memory":{"limit":0}}"#).is_empty());
        assert_eq!(swap_max(0, 1000), Ok(None));
        assert!(swap_max(500, 1000).unwrap_err().contains("below the memory limit 1000"));
        assert!(swap_max(500, 0).unwrap_err().contains("needs a memory limit"));
        assert!(swap_max(500, -1).unwrap_err().contains("needs a memory limit"));
        let err = resources(r#"{"memory":{"limit":-5,"kernel":1,"swappiness":10,"disableOOMKiller":true}}"#).unwrap_err();
        assert_eq!(err.len(), 4, "{err:#?}");
        assert!(err[0].starts_with("linux.resources.memory.limit: -5 is not a limit"), "{err:#?}");
        assert!(err[1].starts_with("linux.resources.memory.kernel:"), "{err:#?}");
    }

    #[test]
    fn swap_max_is_optional_only_when_unlimited() {
        let w = resources(r#"{"memory":{"limit":-1}}"#).unwrap().writes();
        assert!(w[0].optional && w[0].file == "memory.swap.max");
        let w = resources(r#"{"memory":{"limit":10,"swap":20}}"#).unwrap().writes();
        assert!(!w[0].optional);
    }

    #[test]
    fn cpu_max_from_quota_and_period() {
        assert_eq!(writes(r#"{"cpu":{"quota":50000,"period":100000}}"#), pairs(&[("cpu.max", "50000 100000")]));
        assert_eq!(writes(r#"{"cpu":{"quota":20000}}"#), pairs(&[("cpu.max", "20000 100000")]));
        assert_eq!(writes(r#"{"cpu":{"quota":-1,"period":50000}}"#), pairs(&[("cpu.max", "max 50000")]));
        assert_eq!(writes(r#"{"cpu":{"quota":0,"period":0}}"#), pairs(&[]));
        assert_eq!(writes(r#"{"cpu":{"quota":-1}}"#), pairs(&[("cpu.max", "max 100000")]));
        assert_eq!(writes(r#"{"cpu":{"idle":1,"burst":1000}}"#), pairs(&[("cpu.idle", "1"), ("cpu.max.burst", "1000")]));
        let err = resources(r#"{"cpu":{"quota":10,"period":5,"idle":2,"realtimeRuntime":5}}"#).unwrap_err();
        assert_eq!(
            err,
            vec![
                "linux.resources.cpu.period: 5 is outside 1000..1000000 microseconds",
                "linux.resources.cpu.quota: 10 is below the kernel's minimum of 1000 microseconds",
                "linux.resources.cpu.idle: 2 is not 0 or 1",
                "linux.resources.cpu.realtimeRuntime: real-time cpu limits are cgroup v1 only",
            ]
        );
    }

    #[test]
    fn cpuset_lists_are_checked() {
        assert_eq!(writes(r#"{"cpu":{"cpus":"0-1,3","mems":"0"}}"#), pairs(&[("cpuset.cpus", "0-1,3"), ("cpuset.mems", "0")]));
        assert_eq!(resources(r#"{"cpu":{"cpus":"0-","mems":"a"}}"#).unwrap_err().len(), 2);
        assert!(!valid_cpu_list("3-1"));
        assert!(valid_cpu_list("7"));
    }

    #[test]
    fn pids_limit() {
        assert_eq!(writes(r#"{"pids":{"limit":10}}"#), pairs(&[("pids.max", "10")]));
        assert_eq!(writes(r#"{"pids":{"limit":-1}}"#), pairs(&[("pids.max", "max")]));
        assert_eq!(writes(r#"{"pids":{"limit":0}}"#), pairs(&[]));
    }

    #[test]
    fn throttles_combine_into_one_io_max_line_per_device() {
        let w = resources(
            r#"{"blockIO":{"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576},{"major":254,"minor":0,"rate":0}],
                "throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":2097152}],
                "throttleReadIOPSDevice":[{"major":8,"minor":0,"rate":100}],
                "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":200}]}}"#,
        )
        .unwrap()
        .writes();
        let got: Vec<_> = w.iter().map(|w| (w.file.as_str(), w.value.as_str(), w.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("io.max", "8:0 rbps=1048576 wbps=2097152 riops=100 wiops=200", "linux.resources.blockIO.throttleReadBpsDevice[0]"),
                ("io.max", "254:0 rbps=max", "linux.resources.blockIO.throttleReadBpsDevice[1]"),
            ]
        );
    }

    #[test]
    fn hugetlb_and_rdma() {
        assert_eq!(
            writes(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304},{"pageSize":"1GB","limit":0}]}"#),
            pairs(&[("hugetlb.2MB.max", "4194304"), ("hugetlb.1GB.max", "0")])
        );
        let err = resources(r#"{"hugepageLimits":[{"pageSize":"2M","limit":1},{"pageSize":"2MB","limit":-1}]}"#).unwrap_err();
        assert_eq!(err, vec!["linux.resources.hugepageLimits[0].pageSize: \"2M\" is not a page size like 2MB or 1GB", "linux.resources.hugepageLimits[1].limit: -1 must not be negative"]);
        assert_eq!(writes(r#"{"rdma":{"mlx4_0":{"hcaHandles":2,"hcaObjects":2000}}}"#), pairs(&[("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000")]));
    }

    #[test]
    fn unified_is_written_last_and_checked() {
        let w = resources(r#"{"unified":{"memory.high":"1000000","cgroup.max.depth":"3"},"pids":{"limit":5}}"#).unwrap().writes();
        let got: Vec<_> = w.iter().map(|w| (w.file.as_str(), w.controller(), w.field.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("pids.max", "pids", "linux.resources.pids.limit"),
                ("cgroup.max.depth", "cgroup", "linux.resources.unified.cgroup.max.depth"),
                ("memory.high", "memory", "linux.resources.unified.memory.high"),
            ]
        );
        let err = resources(r#"{"unified":{"../x.max":"1","cgroup.procs":"1","nodot":"1"}}"#).unwrap_err();
        assert_eq!(err.len(), 3, "{err:#?}");
        assert!(err[0].starts_with("linux.resources.unified.../x.max: must be a file name"), "{err:#?}");
        assert!(err[1].contains("cgroup.procs: is managed by the runtime"), "{err:#?}");
        assert!(err[2].contains("nodot: is not a cgroup v2 file name"), "{err:#?}");
    }

    #[test]
    fn devices_alone_ask_for_nothing() {
        let r = resources(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn network_is_refused() {
        let err = resources(r#"{"network":{"classID":5}}"#).unwrap_err();
        assert!(err[0].starts_with("linux.resources.network: network class ids"), "{err:?}");
    }
}
